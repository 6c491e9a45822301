"""`s2ray run`: the whole pipeline — base model, System 2 sampling + vote + filter, distillation training,
evaluation of System 1 / System 2 / distilled System 1, and the report.

    s2ray run                      # the toy world on this machine (what `make demo` runs)
    s2ray run --config llama2-70b  # the same stages on a cluster (via jobs/run.py and `ray job submit`)
    s2ray run --fresh              # a new run folder even if the latest run has the same config

Each stage writes into the run folder and marks itself done (`<stage>/DONE`); rerunning with the same config
continues the latest run folder and skips finished stages (generation also resumes row by row).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from s2ray.config import Config
from s2ray.runs import new_run_dir

STAGES = ("generate", "train", "eval")


def pick_run_dir(cfg: Config, out: str | None, fresh: bool) -> Path:
    """`out` if given; else runs/latest when it was made with this exact config (and not --fresh); else a new one."""
    if out:
        path = Path(out)
    else:
        latest = cfg.path(cfg.runs_dir) / "latest"
        same = (latest / "config.yaml").exists() and yaml.safe_load((latest / "config.yaml").read_text()) == \
            cfg.model_dump(mode="json")
        path = latest.resolve() if same and not fresh else new_run_dir(cfg.path(cfg.runs_dir))
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def _done(run_dir: Path, stage: str) -> dict[str, Any] | None:
    marker = run_dir / stage / "DONE"
    return json.loads(marker.read_text()) if marker.exists() else None


def _mark(run_dir: Path, stage: str, info: dict[str, Any]) -> None:
    (run_dir / stage).mkdir(parents=True, exist_ok=True)
    (run_dir / stage / "DONE").write_text(json.dumps(info, indent=1))


def run_pipeline(cfg: Config, base_model: str | Path, run_dir: Path) -> dict[str, Any]:
    from s2ray.evaluate import evaluate
    from s2ray.generate import generate
    from s2ray.train import train

    timings: dict[str, float] = {}
    for stage in STAGES:
        info = _done(run_dir, stage)
        if info is not None:
            print(f"[{stage}] done already, reusing {run_dir / stage}")
            continue
        print(f"[{stage}] starting")
        start = time.time()
        if stage == "generate":
            summary = generate(cfg, base_model, run_dir / "generate")
            info = {"distill_set": str(run_dir / "generate" / "distill.jsonl"), "rows_kept": summary["rows_kept"]}
        elif stage == "train":
            model = train(cfg, run_dir / "generate" / "distill.jsonl", base_model, run_dir / "train")
            info = {"model": str(model)}
        else:
            distilled = _done(run_dir, "train")["model"]
            (run_dir / "eval").mkdir(exist_ok=True)
            report = evaluate(cfg, base_model, run_dir, distilled=distilled)
            info = {"report": str(run_dir / "report.json")}
        timings[stage] = round(time.time() - start, 1)
        _mark(run_dir, stage, {**info, "seconds": timings[stage]})
    report = json.loads((run_dir / "report.json").read_text())
    report["stage_seconds"] = {s: (_done(run_dir, s) or {}).get("seconds") for s in STAGES}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    from s2ray.report import table

    print(table(report))
    print(f"report: {run_dir / 'report.json'}  ({run_dir / 'report.md'}, {run_dir / 'plot.png'})")
    return report
