"""Evaluate System 1 and each task's System 2 method on the held-out split through one real vLLM engine.

    s2ray eval                              # toy profile: builds/reuses the toy model, 500 rows per task
    s2ray eval eval.num_examples=100

Every row of every task and system runs as its own async program against the engine, so continuous batching
spans rows, steps and systems. Writes report.json and predictions.jsonl into the run folder.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from s2ray.config import Config
from s2ray.methods import Engine, Sampling, get_method
from s2ray.report import summarize, table, write_report
from s2ray.sampling import fields_of
from s2ray.tasks import get_task, make_rows, read_jsonl, validate_row

def test_rows(cfg: Config, task_name: str) -> list[dict[str, Any]]:
    """Held-out labelled rows: the task's test_file if configured, else generated toy rows."""
    task, spec = get_task(task_name), cfg.tasks[task_name]
    if spec.test_file is None:
        return make_rows(task, "test", cfg.eval.num_examples, cfg.eval.seed)
    rows = []
    for _, row, error in read_jsonl(cfg.path(spec.test_file), lambda r: validate_row(r, task_name)):
        if error:
            raise ValueError(f"tasks.{task_name}.test_file: {error}")
        if "label" not in row:
            raise ValueError(f"tasks.{task_name}.test_file: row {row['id']} has no 'label' (needed to score)")
        rows.append(row)
    return rows


async def run_row(engine: Engine, task: ModuleType, method: ModuleType, row: dict[str, Any], system: str,
                  sampling: Sampling, style: str) -> dict[str, Any]:
    record = {"id": row["id"], "task": task.NAME, "system": system, "method": method.NAME, "label": row["label"]}
    try:
        (trace,) = await method.run(engine, task, fields_of(row), sampling, style)
    except ValueError as e:  # e.g. a prompt longer than the context: this row fails, the others go on
        return {**record, "answer": None, "correct": False, "generated_tokens": 0, "error": str(e)}
    return {**record, "answer": trace.answer, "correct": task.score(trace.answer, row["label"]),
            "generated_tokens": trace.generated_tokens, "output": trace.output}


BASE_SYSTEMS = ("system1", "system2")


async def evaluate_async(engine: Engine, cfg: Config, systems: tuple[str, ...] = BASE_SYSTEMS) -> list[dict[str, Any]]:
    """Every held-out row of every task under each system: system1 (direct), system2 (the task's method), and
    distilled (direct, meant for an engine on the distilled model)."""
    sampling = Sampling(n=1, temperature=0.0, max_tokens=cfg.eval.max_tokens)
    jobs = []
    for name, spec in cfg.tasks.items():
        task, rows = get_task(name), test_rows(cfg, name)
        for system in systems:
            method = spec.method if system == "system2" else "direct"
            jobs += [(task, get_method(method), row, system) for row in rows]
    gate = asyncio.Semaphore(cfg.eval.concurrency)

    async def one(job):
        async with gate:
            return await run_row(engine, *job, sampling=sampling, style=cfg.prompt_style)

    records = []
    with tqdm(total=len(jobs), desc=f"eval {'+'.join(systems)}") as bar:
        for done in asyncio.as_completed([one(j) for j in jobs]):
            records.append(await done)
            bar.update()
    return records


def _run_engine(cfg: Config, model: str | Path, systems: tuple[str, ...]) -> tuple[list[dict[str, Any]], float]:
    from s2ray.engine import VLLMEngine

    engine = VLLMEngine(model, cfg.engine)
    try:
        start = time.time()
        return asyncio.run(evaluate_async(engine, cfg, systems)), time.time() - start
    finally:
        engine.shutdown()


def evaluate(cfg: Config, model: str | Path, run_dir: Path, distilled: str | Path | None = None) -> dict[str, Any]:
    """System 1 and System 2 on the base `model` (one engine), then the `distilled` model's direct answers (a second
    engine, if given); writes report.json, report.md, plot.png and predictions.jsonl; prints the table."""
    records, seconds = _run_engine(cfg, model, BASE_SYSTEMS)
    if distilled is not None:
        more, more_seconds = _run_engine(cfg, distilled, ("distilled",))
        records, seconds = records + more, seconds + more_seconds
    with open(run_dir / "predictions.jsonl", "w") as f:
        for r in sorted(records, key=lambda r: (r["task"], r["system"], r["id"])):
            f.write(json.dumps(r) + "\n")
    report = {**summarize(records), "profile": cfg.name, "model": str(model),
              "distilled_model": str(distilled) if distilled else None, "eval_seconds": round(seconds, 1)}
    write_report(run_dir, report)
    print(table(report))
    return report
