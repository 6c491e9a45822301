"""`s2ray generate` on real Ray Data + vLLM CPU with the toy model: schema, k votes, order-swap, bad rows, resume.

Every run is the real CLI in a subprocess (what a user runs), on a small input with malformed rows mixed in.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

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


def test_generate_records_votes_filters_and_errors(tmp_path, toy_model):
    input_path = tmp_path / "in.jsonl"
    valid, bad = write_inputs(input_path, per_task=12)
    done = run_cli(tmp_path / "out", input_path)
    out = tmp_path / "out"
    records = [json.loads(line) for line in open(out / "records.jsonl")]
    errors = {e["id"]: e["reason"] for e in map(json.loads, open(out / "errors.jsonl"))}
    print(done.stdout[-2000:])
    print(f"errors file: {errors}")

    assert {r["id"] for r in records} == valid and len(records) == len(valid)  # every valid row, once
    assert set(errors) == set(bad)  # every malformed row, with its reason
    for row_id, reason in bad.items():
        assert reason in errors[row_id], (row_id, errors[row_id])
    for rec in records:
        votes = json.loads(rec["votes"])
        assert len(votes) == (2 * K if rec["task"] == "pair_judge" else K)  # k votes (both orders for judging)
        assert rec["status"] in ("kept", "dropped") and rec["generated_tokens"] > 0
        assert (rec["status"] == "kept") == (rec["target"] != "")
    judge = [r for r in records if r["task"] == "pair_judge"]
    assert all(r["reason"] == "kept" or r["reason"].startswith("order-swap") for r in judge)

    distill = [json.loads(line) for line in open(out / "distill.jsonl")]
    assert distill and all(set(d) == {"id", "task", "prompt", "target"} for d in distill)
    assert {d["id"] for d in distill} == {r["id"] for r in records if r["status"] == "kept"}
    assert all(not d["prompt"].startswith(("rephrase", "step by step", "branch", "rewrite")) for d in distill)
    import pyarrow.parquet as pq
    assert pq.read_table(out / "distill.parquet").num_rows == len(distill)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_recorded"] == len(valid) and summary["rows_errored"] == len(bad)


def test_killed_run_resumes_with_the_exact_id_set(tmp_path, toy_model):
    input_path = tmp_path / "in.jsonl"
    valid, bad = write_inputs(input_path, per_task=24)
    out = tmp_path / "out"
    proc = run_cli(out, input_path, background=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(ids_in(out / "records.jsonl")) < 16 and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(ids_in(out / "records.jsonl"))
    assert 0 < before < len(valid), f"kill landed at {before} of {len(valid)} rows"

    done = run_cli(out, input_path)
    records = ids_in(out / "records.jsonl")
    errors = ids_in(out / "errors.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    print(f"killed after {before} rows; resumed run skipped {summary['this_run']['skipped_already_done']} and "
          f"processed {summary['this_run']['kept'] + summary['this_run']['dropped']} more")
    assert sorted(records) == sorted(valid)  # 0 lost, 0 duplicated
    assert len(set(errors)) == len(errors) and set(errors) == set(bad)
    assert summary["this_run"]["skipped_already_done"] >= before
