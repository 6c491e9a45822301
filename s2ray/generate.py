"""`s2ray generate`: System 2 sampling at scale with Ray Data through autoscaling vLLM actor pools.

    s2ray generate                                  # toy profile: 2,000 unlabelled rows per task
    s2ray generate --input rows.jsonl --out DIR     # your rows: {"id", "task", <task fields>}

Rows stream from the input (JSONL or Parquet) through a pool of System2Sampler actors (one vLLM engine each,
`generate.concurrency=(min, max)` actors) and come back as records, appended by the driver as they arrive:
records.jsonl (every row: kept/dropped/error, votes, agreement, tokens), errors.jsonl (bad rows with the reason),
and at the end distill.jsonl + distill.parquet (id, task, prompt in System 1 form, target; a judging verdict kept by
the order-swap filter appears in both orders, the swapped one as `<id>#swapped`) and summary.json.
Rerunning into the same folder skips ids already recorded: no row lost, none written twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from s2ray.config import Config, ConfigError
from s2ray.engine import engine_env
from s2ray.sampling import RECORD_FIELDS, sample_row
from s2ray.tasks import RowError, get_task, make_rows, validate_row

DISTILL_FIELDS = ("id", "task", "prompt", "target")


class System2Sampler:
    """Ray Data actor: one vLLM engine; every row of a batch runs its System 2 program concurrently on it."""

    def __init__(self, cfg_json: str, model: str):
        from s2ray.engine import VLLMEngine

        self.cfg = Config.model_validate_json(cfg_json)
        self.engine = VLLMEngine(model, self.cfg.engine)

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        import asyncio

        rows = [json.loads(text) for text in batch["row"]]
        records = await asyncio.gather(*(sample_row(self.engine, self.cfg, row) for row in rows))
        return {name: [r[name] for r in records] for name in RECORD_FIELDS}


def sampler_env(cfg: Config) -> dict[str, str]:
    """A sampler actor's environment from its process start: the engine's (`engine_env`: e.g. tcmalloc, preloaded)
    and its model's OpenMP threads (`generate.cpu_threads`; Ray otherwise sets them to the actor's num_cpus)."""
    env = engine_env(cfg.engine)
    if cfg.generate.cpu_threads is not None:
        env["OMP_NUM_THREADS"] = str(cfg.generate.cpu_threads)
    return env


def parse_line(number: int, raw: bytes, source: str) -> dict[str, Any]:
    """One input line -> {"id", "row": JSON of the clean row}; a bad line carries its error instead."""
    where = f"{source}:{number}"
    try:
        data = json.loads(raw.decode("utf-8-sig") if number <= 1 else raw.decode("utf-8"))  # a BOM opens a file
        if not isinstance(data, dict):
            raise RowError(f"expected a JSON object, got {type(data).__name__}")
        row = validate_row(data)
    except UnicodeDecodeError as e:
        return _bad(where, f"invalid UTF-8 ({e.reason} at byte {e.start})")
    except json.JSONDecodeError as e:
        return _bad(where, f"invalid JSON ({e.msg} at column {e.colno})")
    except RowError as e:  # before ValueError, its base
        row_id = data.get("id") if isinstance(data, dict) else None
        return _bad(where, str(e), row_id, data.get("task") if isinstance(data, dict) else None)
    except RecursionError:
        return _bad(where, "invalid JSON (nested too deeply)")
    except ValueError as e:  # e.g. an integer of over 4,300 digits: Python's json refuses it
        return _bad(where, f"invalid JSON ({e})")
    row.pop("label", None)  # gold labels never enter the distillation path
    return {"id": row["id"], "row": json.dumps(row)}


def _bad(where: str, reason: str, row_id: Any = None, task: Any = None) -> dict[str, Any]:
    row_id = str(row_id) if isinstance(row_id, (str, int)) and str(row_id).strip() else f"<{where}>"
    return {"id": row_id, "row": json.dumps({"id": row_id, "task": task if isinstance(task, str) else "",
                                             "error": f"{where}: {reason}"})}


def _lines(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    source = os.path.basename(item["path"])
    for number, raw in enumerate(item["bytes"].split(b"\n"), start=1):
        if raw.strip():
            yield parse_line(number, raw, source)


def _parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    import hashlib

    clean = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
    raw = json.dumps(clean, default=str).encode()
    # a bad row without a usable id is named by its content: Parquet rows carry no line number
    return parse_line(0, raw, f"parquet row {hashlib.sha1(raw).hexdigest()[:12]}")


def is_parquet(path: str) -> bool:
    """A .parquet file, or a folder (local or any URI pyarrow reads: s3://, gs://, file://...) holding one."""
    if path.rstrip("/").endswith(".parquet"):
        return True
    if "://" not in path:
        return Path(path).is_dir() and any(Path(path).glob("*.parquet"))
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(path)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False
    return any(f.path.endswith(".parquet") for f in fs.get_file_info(pafs.FileSelector(root)))


def read_inputs(path: str):
    """A Ray Dataset of {"id", "row"} from JSONL (line by line, so one bad line never fails the read) or Parquet."""
    import ray.data

    if is_parquet(str(path)):
        return ray.data.read_parquet(path).map(_parquet_row)
    return ray.data.read_binary_files(path, include_paths=True).flat_map(_lines)


def toy_inputs(cfg: Config, out: Path) -> Path:
    """Unlabelled toy rows of every configured task (labels stripped: the pipeline never sees gold)."""
    path = out / "inputs.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for name, spec in cfg.tasks.items():
                rows = round(cfg.generate.rows_per_task * spec.rows_weight)
                for row in make_rows(get_task(name), "unlabelled", rows, cfg.generate.seed):
                    row.pop("label")
                    f.write(json.dumps(row) + "\n")
        tmp.replace(path)
    return path


def recorded_ids(path: Path) -> set[str]:
    """Ids already in an append-only JSONL file. A last line without its newline (a killed writer) is cut off, even
    when it parses: the next run appends after it. Other unreadable lines are skipped, never truncated away."""
    if not path.exists():
        return set()
    ids, good_bytes = set(), 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            good_bytes += len(raw)
            rec = _json_object(raw)
            if rec is not None and "id" in rec:
                ids.add(rec["id"])
    if good_bytes < path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return ids


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    """One line of records.jsonl / errors.jsonl, or None for a blank or unreadable one."""
    try:
        rec = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return rec if isinstance(rec, dict) else None


def record_settings(cfg: Config, model: str | Path) -> dict[str, Any]:
    """What decides a row's record: rows recorded under other settings must not be mixed into one distill set."""
    local = Path(model)
    gen = cfg.generate
    return {"model": str(local.resolve()) if local.exists() else str(model), "prompt_style": cfg.prompt_style,
            "tasks": {name: spec.model_dump() for name, spec in sorted(cfg.tasks.items())},
            **{f"generate.{k}": getattr(gen, k) for k in ("num_samples", "temperature", "top_p", "max_tokens",
                                                          "agreement", "min_valid", "filter", "order_swap",
                                                          "both_orders")},
            "engine.seed": cfg.engine.seed, "engine.max_model_len": cfg.engine.max_model_len}


def check_resume(out: Path, settings: dict[str, Any], resuming: bool) -> None:
    """Record this run's settings in `out`; when resuming, refuse settings other than the ones recorded there."""
    path = out / "settings.json"
    settings = json.loads(json.dumps(settings))  # as JSON has them (tuples as lists)
    if resuming and path.exists():
        before = json.loads(path.read_text())
        changed = [f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in sorted(before.keys() | settings.keys())
                   if before.get(k) != settings.get(k)]
        if changed:
            raise ConfigError(f"{out} holds records made with other settings ({'; '.join(changed)}); rerun with "
                              f"those to resume, or write to a new --out")
    path.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")


def generate(cfg: Config, model: str | Path, out: Path, input_path: str | None = None) -> dict[str, Any]:
    """Run System 2 sampling over the inputs into `out`; returns the summary (also written to summary.json).
    Resuming into a folder written with other record settings (k, tau, methods, model, ...) raises ConfigError."""
    import ray

    out.mkdir(parents=True, exist_ok=True)
    records_path, errors_path = out / "records.jsonl", out / "errors.jsonl"
    done = recorded_ids(records_path) | recorded_ids(errors_path)
    check_resume(out, record_settings(cfg, model), resuming=bool(done))
    source = input_path or cfg.generate.input or str(toy_inputs(cfg, out))
    gen = cfg.generate
    if not ray.is_initialized():
        ray.init(runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}}, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = read_inputs(source)
    if done:
        rows = rows.filter(lambda r: r["id"] not in done)
    # A JSONL file reads as one block; streaming repartition cuts it into batch-sized blocks so that several
    # batches are in flight on every actor (otherwise one task walks the whole file, one batch at a time).
    rows = rows.repartition(target_num_rows_per_block=gen.batch_size)
    results = rows.map_batches(
        System2Sampler, fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "model": str(model)},
        batch_size=gen.batch_size, concurrency=tuple(gen.concurrency), num_cpus=gen.num_cpus,
        num_gpus=gen.num_gpus, max_concurrency=gen.batches_per_actor,
        runtime_env={"env_vars": sampler_env(cfg)})  # from the actor process's start (e.g. tcmalloc preloaded)

    counts = {"kept": 0, "dropped": 0, "error": 0, "duplicate": 0}
    tokens, start, written = 0, time.time(), set(done)
    bar = tqdm(desc="generate", unit=" rows")
    with open(records_path, "a") as records, open(errors_path, "a") as errors:
        # prefetch_batches=0: with Ray Data's default (1), each batch reached this loop only when the next one was
        # done too (~2.4 s later on the toy profile): later on disk, and the bench's steady window ~7% too fast
        for batch in results.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
            for rec in batch.to_dict("records"):
                if rec["id"] in written:  # the same id twice in the input: keep the first
                    rec = {**rec, "status": "error", "reason": f"duplicate id {rec['id']!r}"}
                    counts["duplicate"] += 1
                    errors.write(json.dumps({"id": rec["id"], "task": rec["task"], "reason": rec["reason"]}) + "\n")
                    continue
                written.add(rec["id"])
                counts[rec["status"]] += 1
                tokens += int(rec["generated_tokens"])
                target = errors if rec["status"] == "error" else records
                target.write(json.dumps(_plain(rec) if target is records else
                                        {"id": rec["id"], "task": rec["task"], "reason": rec["reason"]}) + "\n")
            for f in (records, errors):
                f.flush()
                os.fsync(f.fileno())
            bar.update(len(batch))
            bar.set_postfix(kept=counts["kept"], dropped=counts["dropped"], errors=counts["error"],
                            tok_s=f"{tokens / max(time.time() - start, 1e-9):.0f}")
    bar.close()
    return finish(out, counts, tokens, time.time() - start, resumed=len(done))


def _plain(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}


ERROR_KINDS = (("invalid UTF-8", "invalid_utf8"), ("invalid JSON", "invalid_json"), ("expected a JSON object",
               "not_an_object"), ("missing field", "missing_field"), ("is empty", "empty_field"),
               ("must be", "wrong_type"), ("the context holds", "too_long"), ("duplicate id", "duplicate_id"),
               ("is not configured", "unconfigured_task"))


def error_kind(reason: str) -> str:
    """A short category of an error reason, for the summary's counts."""
    return next((kind for marker, kind in ERROR_KINDS if marker in reason), "other")


def finish(out: Path, counts: dict[str, int], tokens: int, seconds: float, resumed: int) -> dict[str, Any]:
    """Write the distill set (derived from records.jsonl, so it is always consistent with it) and the summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kept, per_task = [], {}
    with open(out / "records.jsonl") as f:
        for line in f:
            rec = _json_object(line)
            if rec is None or not set(RECORD_FIELDS) <= rec.keys():
                continue  # a blank or hand-damaged line: recorded_ids skipped it too, so its row was sampled again
            stats = per_task.setdefault(rec["task"], {"rows": 0, "kept": 0, "generated_tokens": 0})
            stats["rows"] += 1
            stats["generated_tokens"] += rec["generated_tokens"]
            if rec["status"] == "kept":
                stats["kept"] += 1
                kept.append({k: rec[k] for k in DISTILL_FIELDS})
                if rec.get("swapped_prompt"):  # a judging verdict that survived the order swap, in the other order
                    kept.append({"id": f"{rec['id']}#swapped", "task": rec["task"], "prompt": rec["swapped_prompt"],
                                 "target": get_task(rec["task"]).unswap(rec["target"])})
    kept.sort(key=lambda r: r["id"])  # records arrive in completion order; the distill set should not
    with open(out / "distill.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    pq.write_table(pa.Table.from_pylist(kept, schema=pa.schema([(k, pa.string()) for k in DISTILL_FIELDS])),
                   out / "distill.parquet")
    error_kinds: dict[str, int] = {}
    if (out / "errors.jsonl").exists():
        for line in open(out / "errors.jsonl"):
            rec = _json_object(line)
            if rec is None or "reason" not in rec:
                continue
            kind = error_kind(str(rec["reason"]))
            error_kinds[kind] = error_kinds.get(kind, 0) + 1
    errors = sum(error_kinds.values())
    summary = {"this_run": {**counts, "generated_tokens": tokens, "seconds": round(seconds, 1),
                            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "skipped_already_done": resumed},
               "rows_recorded": sum(s["rows"] for s in per_task.values()),
               "rows_kept": sum(s["kept"] for s in per_task.values()), "distill_rows": len(kept),
               "rows_errored": errors, "errors_by_kind": error_kinds, "per_task": per_task}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(error_kinds.items())) or "none"
    print(f"generate: {summary['rows_recorded']} rows recorded, {summary['rows_kept']} kept ({len(kept)} distill "
          f"rows), {errors} errors ({kinds}) -> {out}")
    return summary


def _kept(task, votes: list, tau: float, min_valid: int = 1, swapped: bool = True) -> bool:
    """Re-apply the filter at another tau, with the run's min_valid: judging rows sampled with the order swap hold k
    original + k swapped-back votes. (A USC row is re-judged by majority: its extra call is not made again.)"""
    from s2ray.filters import kept_at, order_swap

    if swapped and hasattr(task, "swap") and len(votes) % 2 == 0 and votes:
        half = len(votes) // 2
        return order_swap(votes[:half], votes[half:], tau, min_valid).kept
    return kept_at(votes, tau, min_valid)


def precision_report(out: Path, taus: tuple[float, ...] = (0.5, 0.625, 0.75, 0.875, 1.0)) -> str:
    """Kept fraction and precision of kept targets against gold, per task and tau (toy rows only), under the
    min_valid and order swap the records were made with (settings.json).

    Evaluation only: gold is recomputed here from the inputs and never read by the pipeline.
    """
    settings = json.loads((out / "settings.json").read_text()) if (out / "settings.json").exists() else {}
    min_valid, swapped = settings.get("generate.min_valid", 1), settings.get("generate.order_swap", True)
    inputs = {r["id"]: r for r in map(json.loads, open(out / "inputs.jsonl"))}
    by_task: dict[str, list[dict]] = {}
    for rec in filter(None, map(_json_object, open(out / "records.jsonl"))):
        if rec.get("id") in inputs:
            by_task.setdefault(rec["task"], []).append(rec)
    lines = [f"{'task':<13}{'tau':>6}{'kept':>8}{'precision':>11}"]
    for task_name, recs in sorted(by_task.items()):
        task = get_task(task_name)
        for tau in taus:
            kept = [r for r in recs if _kept(task, json.loads(r["votes"]), tau, min_valid, swapped)]
            right = sum(task.score(r["answer"], task.gold(inputs[r["id"]])) for r in kept)
            lines.append(f"{task_name:<13}{tau:>6.3f}{len(kept) / len(recs):>8.1%}"
                         f"{right / max(len(kept), 1):>11.1%}")
        configured = [r for r in recs if r["status"] == "kept"]
        right = sum(task.score(r["target"], task.gold(inputs[r["id"]])) for r in configured)
        lines.append(f"{task_name:<13}{'conf':>6}{len(configured) / len(recs):>8.1%}"
                     f"{right / max(len(configured), 1):>11.1%}   <- configured filter")
    return "\n".join(lines)
