"""Rephrase-and-Respond, 1-step: one call that restates the question in its own words, then answers it."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Engine, Sampling, Trace, finish, step, templates

NAME = "rar1"
PROMPTS = {
    "toy": {"solve": "rephrase and respond. {question}"},
    "chat": {"solve": "{question}\nRephrase and expand the question, and respond. "
                      "End with 'Answer: <answer>'."},
}


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    text = templates(PROMPTS, style, NAME)["solve"].format(question=task.question(fields, style))
    return [finish(task, [step("solve", text, c)]) for c in await engine.generate(text, sampling)]


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    sol = task.solution(fields)
    return [(PROMPTS["toy"]["solve"].format(question=task.question(fields, "toy")),
             f"rephrased: {sol.rephrase}. {sol.reasoning} answer: {sol.answer}")]
