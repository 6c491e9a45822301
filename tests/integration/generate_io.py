"""Inputs and CLI runs shared by the generation tests: valid toy rows with malformed rows mixed in."""

from __future__ import annotations

import json
import subprocess
import sys

from s2ray.tasks import TASKS, make_rows

K = 4
ARGS = [f"generate.num_samples={K}", "generate.min_valid=2", "generate.batch_size=8"]


def write_inputs(path, per_task: int) -> tuple[set[str], dict[str, str]]:
    """Valid unlabelled rows of every task plus malformed ones; returns (valid ids, bad id -> expected reason)."""
    lines, valid = [], set()
    for name, task in TASKS.items():
        for row in make_rows(task, "unlabelled", per_task, seed=7):
            row.pop("label")
            lines.append(json.dumps(row).encode())
            valid.add(row["id"])
    bad = {
        "bad-missing": (b'{"id": "bad-missing", "task": "last_letter"}', "missing field 'words'"),
        "bad-empty": (b'{"id": "bad-empty", "task": "arithmetic", "expression": ""}', "field 'expression' is empty"),
        "bad-type": (b'{"id": "bad-type", "task": "coin_flip", "names": ["a"], "flips": ["yes"]}',
                     "field 'flips'[0] must be bool"),
        "bad-long": (json.dumps({"id": "bad-long", "task": "last_letter", "words": ["abcdefgh"] * 80}).encode(),
                     "the context holds"),
        "<in.jsonl:LINE>": (b'{"id": "bad-utf8", "task": "arithmetic", "expression": "1+\xff"}', "invalid UTF-8"),
    }
    for i, (line, _) in enumerate(bad.values()):
        lines.insert(7 * (i + 1), line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    utf8_line = lines.index(bad["<in.jsonl:LINE>"][0]) + 1
    reasons = {k.replace("LINE", str(utf8_line)): v[1] for k, v in bad.items()}
    return valid, reasons


def run_cli(out, input_path, *extra, background=False):
    cmd = [sys.executable, "-m", "s2ray.cli", "generate", "--input", str(input_path), "--out", str(out), *ARGS, *extra]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def ids_in(path) -> list[str]:
    return [json.loads(line)["id"] for line in open(path)] if path.exists() else []
