"""One row through System 2 sampling: k samples of the task's method, vote, filter -> a record (pure logic).

Runs against any `Engine` (vLLM in the sampler actors, a scripted engine in unit tests). A record says what
happened to the row: kept (with its System 1 prompt and target), dropped (and why) or error (and why).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from s2ray.config import Config
from s2ray.filters import Vote, majority, order_swap, usc_choice, usc_prompt
from s2ray.methods import Engine, Sampling, get_method
from s2ray.methods import direct
from s2ray.tasks import get_task

RECORD_FIELDS = ("id", "task", "status", "reason", "prompt", "target", "answer", "agreement", "valid", "samples",
                 "votes", "generated_tokens", "prompt_tokens", "method", "swapped_prompt")
NOT_FIELDS = ("id", "task", "label", "error")


def fields_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in NOT_FIELDS}


def error_record(row_id: str, task: str, reason: str) -> dict[str, Any]:
    return {"id": row_id, "task": task, "status": "error", "reason": reason, "prompt": "", "target": "",
            "answer": "", "agreement": 0.0, "valid": 0, "samples": 0, "votes": "[]", "generated_tokens": 0,
            "prompt_tokens": 0, "method": "", "swapped_prompt": ""}


async def sample_row(engine: Engine, cfg: Config, row: dict[str, Any]) -> dict[str, Any]:
    """k System 2 samples of one row, voted and filtered. Bad rows come back as error records, never raise."""
    if row.get("error"):
        return error_record(row["id"], row.get("task", ""), row["error"])
    task, gen, style = get_task(row["task"]), cfg.generate, cfg.prompt_style
    method = get_method(cfg.tasks[task.NAME].method) if task.NAME in cfg.tasks else None
    if method is None:
        return error_record(row["id"], task.NAME, f"task {task.NAME!r} is not configured (config tasks)")
    fields = fields_of(row)
    tau = cfg.tasks[task.NAME].agreement or gen.agreement
    sampling = Sampling(n=gen.num_samples, temperature=gen.temperature, top_p=gen.top_p, max_tokens=gen.max_tokens)
    try:
        traces = await method.run(engine, task, fields, sampling, style)
        votes = [t.answer for t in traces]
        if gen.order_swap and hasattr(task, "swap"):
            swapped = await method.run(engine, task, task.swap(fields), sampling, style)
            traces += swapped
            back = [task.unswap(t.answer) for t in swapped]
            vote = order_swap(votes, back, tau, gen.min_valid)
            votes += back
        elif gen.filter == "usc":
            vote, judge = await _usc(engine, task, fields, traces, style, gen.max_tokens, tau, gen.min_valid)
            traces += judge
        else:
            vote = majority(votes, tau, gen.min_valid)
    except ValueError as e:  # prompt too long for the context, and other per-row input problems
        return error_record(row["id"], task.NAME, str(e))
    return {
        "id": row["id"], "task": task.NAME, "status": "kept" if vote.kept else "dropped", "reason": vote.reason,
        "prompt": direct.prompt(task, fields, style), "target": vote.answer if vote.kept else "",
        "answer": vote.answer or "", "agreement": round(vote.agreement, 4), "valid": vote.valid,
        "samples": vote.total, "votes": json.dumps(votes),
        "generated_tokens": sum(t.generated_tokens for t in traces),
        "prompt_tokens": sum(t.prompt_tokens for t in traces), "method": method.NAME,
        # the System 1 prompt with A and B swapped: its target is the kept verdict unswapped (distill set only)
        "swapped_prompt": direct.prompt(task, task.swap(fields), style)
        if vote.kept and gen.order_swap and gen.both_orders and hasattr(task, "swap") else "",
    }


async def _usc(engine: Engine, task, fields, traces, style: str, max_tokens: int, tau: float, min_valid: int):
    """Universal self-consistency: one greedy call picks the most consistent of the k outputs. Rows with fewer
    than `min_valid` parseable answers are dropped as under majority voting; when the k outputs together do not fit
    the context, the majority vote decides instead. Returns (vote, the extra call's traces)."""
    from s2ray.methods.base import PromptTooLong, Trace, step

    votes = [t.answer for t in traces]
    valid = sum(a is not None for a in votes)
    if valid < min_valid:
        return majority(votes, tau, min_valid), []  # dropped: too few valid votes, and no call spent on it
    prompt = usc_prompt(task.question(fields, style), [t.output for t in traces])
    try:
        (picked,) = await engine.generate(prompt, Sampling(n=1, temperature=0.0, max_tokens=max_tokens))
    except PromptTooLong:
        vote = majority(votes, tau, min_valid)
        return replace(vote, reason=f"{vote.reason} (majority vote: the {len(traces)} outputs are too long for one USC "
                                    f"prompt)"), []
    index = usc_choice(picked.text, len(traces))
    answer = traces[index].answer if index is not None else None
    agree = sum(a == answer for a in votes) / valid if answer is not None and valid else 0.0
    reason = "kept" if answer is not None else "universal self-consistency picked no valid response"
    return Vote(answer, agree, valid, len(traces), answer is not None, reason), [Trace([step("usc", prompt, picked)])]
