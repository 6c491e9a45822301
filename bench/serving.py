"""Serving benchmark: System 1 vs System 2 vs the router through the real Serve app, over loopback HTTP.

    flock /tmp/s2ray-heavy.lock .venv/bin/python bench/serving.py [--out FILE] [--model DISTILLED_DIR]
          [--config local-cpu] [--rows 334] [--rounds 3] [--order mixed|grouped] [--concurrency 32]
          [--tasks last_letter,coin_flip] [--client aiohttp|openai] [a.b=value ...]

Starts a local Ray + Serve app on 127.0.0.1 (a free port), then sends held-out toy rows (gold used only to score)
to each model in turn, `--rows` requests per model at `--concurrency` in flight, as OpenAI chat completions (aiohttp;
`--client openai` for the official client): `system1` gets the System 1 prompt, `system2/<method>` the task's
configured System 2 method, `router` the question with `task` named. It does so `--rounds` times, each round on rows
of its own (default 3 x 3 x 334 = 3,006 requests), and pools each system's requests over the rounds. Writes JSON with
latency p50/p99, generated tokens, accuracy, escalation rate, 4xx/5xx counts, the goal ratios and each round's p50s;
prints it. Bounded: a fixed number of requests, a timeout per request, nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2ray.config import load_config
from s2ray.serve.ingress import free_port
from s2ray.tasks import get_task, make_rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


class AioClient:
    """The default load generator: OpenAI-protocol JSON over aiohttp. It spends ~0.1 of a core where the `openai`
    client spends ~0.6 (measured at 300 requests/s), and on a 2-core box the client shares the cores with the server
    it measures. The `openai` client (`--client openai`) checks the same protocol; the tests use it."""

    def __init__(self, url: str, api_key: str, concurrency: int):
        import aiohttp

        self.url, self.headers = url + "/chat/completions", {"Authorization": f"Bearer {api_key}"}
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency * 2))

    async def chat(self, body: dict, timeout: float) -> tuple[int, dict]:
        """(HTTP status, response JSON); status 599 when the connection failed or timed out."""
        import aiohttp

        try:
            async with self.session.post(self.url, json=body, headers=self.headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status, await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 599, {}

    async def close(self) -> None:
        await self.session.close()


class OpenAIClient:
    """The official `openai` async client, returning the same (status, JSON) as AioClient."""

    def __init__(self, url: str, api_key: str, concurrency: int):
        import httpx
        import openai

        self.client = openai.AsyncOpenAI(base_url=url, api_key=api_key, max_retries=0, http_client=httpx.AsyncClient(
            limits=httpx.Limits(max_connections=concurrency * 2)))

    async def chat(self, body: dict, timeout: float) -> tuple[int, dict]:
        import openai

        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens", "temperature")}
        try:
            r = await self.client.chat.completions.create(
                model=body["model"], messages=body["messages"], max_tokens=body["max_tokens"],
                temperature=body["temperature"], timeout=timeout, extra_body=extra or None)
            return 200, r.model_dump()
        except openai.APIStatusError as e:
            return e.status_code, {}
        except (openai.APIConnectionError, openai.APITimeoutError):
            return 599, {}

    async def close(self) -> None:
        await self.client.close()


CLIENTS = {"aiohttp": AioClient, "openai": OpenAIClient}


async def run_phase(client, system: str, jobs: list[dict], concurrency: int, timeout: float) -> dict:
    gate, records = asyncio.Semaphore(concurrency), []

    async def one(job):
        async with gate:
            start = time.perf_counter()
            body = {"model": job["model"], "messages": [{"role": "user", "content": job["question"]}],
                    "max_tokens": job["max_tokens"], "temperature": 0.0,
                    **({"task": job["task"]} if system == "router" else {})}
            status, r = await client.chat(body, timeout)
            record = {"task": job["task"], "status": status}
            if status == 200:
                task = get_task(job["task"])
                info = r.get("s2ray") or {}
                record.update(correct=task.score(task.extract(r["choices"][0]["message"]["content"] or ""),
                                                 job["label"]),
                              tokens=r["usage"]["completion_tokens"], escalated=bool(info.get("escalated", False)))
                if system == "router":  # what System 1 said and how sure it was, to calibrate the threshold
                    record.update(id=job["id"], agreement=info["agreement"], mean_logprob=info["mean_logprob"],
                                  lowest_logprob=info["lowest_logprob"],
                                  system1_tokens=info["system1_tokens"],
                                  system1_correct=task.score(info["system1_answer"], job["label"]))
                elif system == "system2":
                    record.update(id=job["id"])
            else:  # 599: the connection failed or timed out, counted as a server failure
                record.update(correct=False, tokens=0, escalated=False)
            record["seconds"] = time.perf_counter() - start
            record.setdefault("id", job["id"])
            records.append(record)

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return summarize(system, records, time.perf_counter() - start), records


def summarize(system: str, records: list[dict], wall: float) -> dict:
    """One system's numbers from its request records (of one phase, or pooled over rounds with their summed wall)."""
    ok = [r for r in records if r["status"] == 200]
    latencies = [r["seconds"] * 1000 for r in ok]
    summary = {
        "requests": len(records), "ok": len(ok),
        "errors_4xx": sum(400 <= r["status"] < 500 for r in records),
        "errors_5xx": sum(r["status"] >= 500 for r in records),
        "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "generated_tokens": sum(r["tokens"] for r in records),
        "mean_generated_tokens": round(sum(r["tokens"] for r in ok) / max(1, len(ok)), 2),
        "accuracy": round(sum(r["correct"] for r in records) / max(1, len(records)), 4),
        "requests_per_s": round(len(records) / max(wall, 1e-9), 1), "wall_s": round(wall, 3),
        "accuracy_per_task": {t: round(sum(r["correct"] for r in records if r["task"] == t)
                                       / max(1, sum(r["task"] == t for r in records)), 4)
                              for t in sorted({r["task"] for r in records})},
    }
    if system == "router":
        summary["escalation_rate"] = round(sum(r["escalated"] for r in ok) / max(1, len(ok)), 4)
    return summary


def _below(value, threshold):
    return threshold is not None and value is not None and value < threshold


def replay(rows: list[dict], deep: dict[str, dict], agreement: float, mean: float | None, token: float | None,
           straight: frozenset = frozenset()) -> tuple[int, int, int]:
    """(correct, generated tokens, escalated) of the router's decision replayed on recorded System 1 samples and
    System 2 answers; tasks in `straight` go to System 2 without a System 1 sample."""
    correct = tokens = escalated = 0
    for r in rows:
        skip = r["task"] in straight
        unsure = skip or r["agreement"] < agreement or _below(r["mean_logprob"], mean) or \
            _below(r["lowest_logprob"], token) or r["agreement"] == 0  # 0: every sample abstained
        correct += deep[r["id"]]["correct"] if unsure else r["system1_correct"]
        tokens += (0 if skip else r["system1_tokens"]) + (deep[r["id"]]["tokens"] if unsure else 0)
        escalated += unsure
    return correct, tokens, escalated


def calibrate(router: list[dict], system2: list[dict], best_accuracy: float, settings) -> dict:
    """Replay the router's decision offline at other thresholds, on the same System 1 samples and System 2 answers:
    accuracy and generated tokens per (min_agreement, min_mean_logprob, min_token_logprob), to choose serve.router
    settings; `best` is the cheapest setting within 1 point of the best single system (None if none is).
    `per_task`: at the configured thresholds (`settings`, a RouterConfig), each task routed vs sent straight to
    System 2; `system2_tasks` suggests the tasks where going straight is at least as accurate and cheaper."""
    deep = {r["id"]: r for r in system2 if r["status"] == 200}
    rows = [r for r in router if r["status"] == 200 and r["id"] in deep]
    s2_tokens = sum(deep[r["id"]]["tokens"] for r in rows) or 1

    def entry(correct, tokens, escalated, n):
        return {"accuracy": round(correct / max(1, n), 4), "tokens_vs_system2": round(tokens / s2_tokens, 4),
                "escalation_rate": round(escalated / max(1, n), 4)}

    table = []
    for agreement in (0.0, 0.5, 0.75, 1.0):
        for mean in (None, -0.02, -0.05, -0.1, -0.2, -0.5):
            for token in (None, -0.05, -0.1, -0.2, -0.25, -0.3, -0.4, -0.5, -0.75, -1.0, -2.0):
                table.append({"min_agreement": agreement, "min_mean_logprob": mean, "min_token_logprob": token,
                              **entry(*replay(rows, deep, agreement, mean, token), len(rows))})
    good = [t for t in table if t["accuracy"] >= best_accuracy - 0.01]
    configured = (settings.min_agreement, settings.min_mean_logprob, settings.min_token_logprob)
    per_task, suggested = {}, []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        routed = entry(*replay(mine, deep, *configured), len(mine))
        straight = entry(*replay(mine, deep, *configured, frozenset([task])), len(mine))
        per_task[task] = {"routed": routed, "straight_to_system2": straight}
        if straight["accuracy"] >= routed["accuracy"] and straight["tokens_vs_system2"] < routed["tokens_vs_system2"]:
            suggested.append(task)
    return {"best": min(good, key=lambda t: t["tokens_vs_system2"], default=None), "table": table,
            "per_task": per_task, "system2_tasks": suggested}


async def bench(url: str, api_key: str, cfg, tasks: list[str], rows: int, concurrency: int, timeout: float,
                seed: int, client_name: str, rounds: int = 1, order: str = "mixed") -> tuple[dict, dict, dict, list]:
    """Each round sends its own `rows` rows to System 1, then System 2, then the router; each system's numbers pool
    its requests over the rounds. Interleaving the phases in time lets a slow minute of a shared machine weigh on
    every system alike, instead of on whichever phase it hit (a System 1 phase of 334 requests lasts ~1 s).
    order: "mixed", the tasks take turns (traffic as an endpoint gets it); "grouped", one task's rows after another's
    within a round (System 2's p50 is then lower: its cheap programs no longer share engine steps with long ones)."""
    client = CLIENTS[client_name](url, api_key, concurrency)
    per_task = -(-rows * rounds // len(tasks))
    per_task_rows = [make_rows(get_task(name), "test", per_task, seed) for name in tasks]
    examples = [r for group in zip(*per_task_rows) for r in group][:rows * rounds]  # every round: the same mix
    if order == "grouped":  # within a round, one task after another (how the bench sent rows until session 6)
        examples = [r for i in range(rounds) for r in sorted(examples[i * rows:(i + 1) * rows],
                                                             key=lambda r: tasks.index(r["task"]))]
    fields = {r["id"]: {k: v for k, v in r.items() if k not in ("id", "task", "label")} for r in examples}
    style = cfg.prompt_style
    # one warm-up request per model, not measured
    for model in (cfg.serve.system1_name, "router", f"system2/{cfg.tasks[tasks[0]].method}"):
        status, _ = await client.chat({"model": model, "messages": [{"role": "user", "content": "warm up"}],
                                       "max_tokens": 4, "temperature": 0.0}, timeout)
        assert status == 200, f"warm-up request to {model} got HTTP {status}"
    systems = ("system1", "system2", "router")
    records, walls, per_round = {s: [] for s in systems}, dict.fromkeys(systems, 0.0), []
    for i in range(rounds):
        this_round = {}
        for system in systems:
            jobs = [{"id": r["id"], "task": r["task"], "label": r["label"], "max_tokens": cfg.eval.max_tokens,
                     "question": get_task(r["task"]).question(fields[r["id"]], style),
                     "model": {"system1": cfg.serve.system1_name, "router": "router",
                               "system2": f"system2/{cfg.tasks[r['task']].method}"}[system]}
                    for r in examples[i * rows:(i + 1) * rows]]
            this_round[system], got = await run_phase(client, system, jobs, concurrency, timeout)
            records[system] += got
            walls[system] += this_round[system]["wall_s"]
            print(f"round {i + 1}/{rounds} {system}: {json.dumps(this_round[system])}", flush=True)
        p50 = {s: this_round[s]["p50_ms"] for s in systems}
        per_round.append({"p50_ms": p50, "p50_ratio_system1_vs_system2":
                          round(p50["system1"] / p50["system2"], 4) if p50["system2"] else None})
    await client.close()
    results = {s: summarize(s, records[s], walls[s]) for s in systems}
    best = max(results["system1"]["accuracy"], results["system2"]["accuracy"])
    return results, records, calibrate(records["router"], records["system2"], best, cfg.serve.router), per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="local-cpu")
    parser.add_argument("--model", default=None, help="distilled System 1 model folder (default: serve.model)")
    parser.add_argument("--rows", type=int, default=334, help="requests per model and round (same rows for each "
                        "model)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of System 1, System 2, router phases, each on "
                        "rows of its own; numbers pool the rounds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: all of the profile's)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request")
    parser.add_argument("--seed", type=int, default=None, help="seed of the held-out rows (default eval.seed + 1; "
                        "calibrate thresholds on another seed than the one you report)")
    parser.add_argument("--records", default=None, help="write every request's record here (JSONL), to replay")
    parser.add_argument("--order", choices=("mixed", "grouped"), default="mixed", help="mixed: the tasks take "
                        "turns; grouped: one task's rows after another's within a round")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp",
                        help="load generator (default aiohttp: the lightest; openai: the official client)")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    assert 1 <= args.rows <= 5000 and 1 <= args.concurrency <= 256 and 1 <= args.rounds <= 10, \
        "bounded: rows <= 5000, concurrency <= 256, rounds <= 10"

    api_key = os.urandom(12).hex()
    os.environ["S2RAY_BENCH_API_KEY"] = api_key  # before Ray starts, so the replicas inherit it
    cfg = load_config(args.config, [f"serve.port={free_port()}", "serve.host=127.0.0.1",
                                    "serve.api_key_env=S2RAY_BENCH_API_KEY", *args.overrides])
    tasks = args.tasks.split(",") if args.tasks else list(cfg.tasks)

    import ray
    from ray import serve

    from s2ray.serve.app import run_app, start_ray

    start_ray(cfg, num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        url = run_app(cfg, args.model, blocking=False)
        ready_s = time.perf_counter() - start
        seed = cfg.eval.seed + 1 if args.seed is None else args.seed
        systems, records, calibration, per_round = asyncio.run(bench(
            url, api_key, cfg, tasks, args.rows, args.concurrency, args.timeout, seed, args.client, args.rounds,
            args.order))
    finally:
        serve.shutdown()
        ray.shutdown()

    s1, s2, router = systems["system1"], systems["system2"], systems["router"]
    best = max(s1["accuracy"], s2["accuracy"])
    result = {
        "profile": cfg.name, "model": args.model or cfg.serve.model or "base", "tasks": tasks, "row_seed": seed,
        "requests": sum(s["requests"] for s in systems.values()), "rounds": args.rounds, "order": args.order,
        "concurrency": args.concurrency,
        "client": args.client, "ingress": cfg.serve.ingress, "executor": cfg.engine.executor,
        "ready_s": round(ready_s, 1),
        "errors_5xx": sum(s["errors_5xx"] for s in systems.values()),
        "errors_4xx": sum(s["errors_4xx"] for s in systems.values()),
        "p50_ratio_system1_vs_system2": round(s1["p50_ms"] / s2["p50_ms"], 4),
        "router_tokens_vs_system2": round(router["generated_tokens"] / max(1, s2["generated_tokens"]), 4),
        "router_accuracy_minus_best": round(router["accuracy"] - best, 4),
        "goals": {"zero_5xx": sum(s["errors_5xx"] for s in systems.values()) == 0,
                  "system1_p50_le_0.2x_system2": s1["p50_ms"] <= 0.2 * s2["p50_ms"],
                  "router_accuracy_ge_best_minus_1pt": router["accuracy"] >= best - 0.01,
                  "router_tokens_le_30pct_system2": router["generated_tokens"] <= 0.3 * s2["generated_tokens"]},
        "systems": systems, "per_round": per_round,
        "router": cfg.serve.router.model_dump(),
        "router_calibration": calibration,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.records:
        with open(args.records, "w") as f:
            f.writelines(json.dumps({"system": system, **r}) + "\n" for system, rs in records.items() for r in rs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
