"""System 1: answer directly in one call (the baseline, and the form the distilled model answers in)."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Engine, Sampling, Trace, finish, step, templates

NAME = "direct"
PROMPTS = {
    "toy": {"answer": "{question}"},
    "chat": {"answer": "{question}\nGive only the final answer, as 'Answer: <answer>'."},
}


def prompt(task: ModuleType, fields: dict[str, Any], style: str) -> str:
    """The System 1 prompt of a row: what the distilled model is trained on and served with."""
    return templates(PROMPTS, style, NAME)["answer"].format(question=task.question(fields, style))


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    text = prompt(task, fields, style)
    return [finish(task, [step("answer", text, c)]) for c in await engine.generate(text, sampling)]


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    answer = task.direct_demo(fields, rng)
    return [] if answer is None else [(prompt(task, fields, "toy"), answer)]
