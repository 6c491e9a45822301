"""Chain-of-Thought: one call that reasons step by step, then gives the answer."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Engine, Sampling, Trace, finish, step, templates

NAME = "cot"
PROMPTS = {
    "toy": {"solve": "step by step. {question}"},
    "chat": {"solve": "{question}\nLet's think step by step, then end with 'Answer: <answer>'."},
}


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    text = templates(PROMPTS, style, NAME)["solve"].format(question=task.question(fields, style))
    return [finish(task, [step("solve", text, c)]) for c in await engine.generate(text, sampling)]


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    sol = task.solution(fields)
    return [(PROMPTS["toy"]["solve"].format(question=task.question(fields, "toy")),
             f"{sol.reasoning} answer: {sol.answer}")]
