"""Rephrase-and-Respond, 2-step: one call rephrases the question, a second answers it given the rephrasing."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Completion, Engine, Sampling, Trace, chains, finish, single, step, templates

NAME = "rar2"
PROMPTS = {
    "toy": {"rephrase": "rephrase. {question}", "respond": "{question}\nrephrased: {rephrase}\nrespond."},
    "chat": {
        "rephrase": "{question}\nGiven the above question, rephrase and expand it to help you do better "
                    "answering. Maintain all information in the original question.",
        "respond": "(original) {question}\n(rephrased) {rephrase}\nUse your answer for the rephrased question "
                   "to answer the original question. End with 'Answer: <answer>'.",
    },
}


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    prompts, question = templates(PROMPTS, style, NAME), task.question(fields, style)
    first_prompt = prompts["rephrase"].format(question=question)

    async def respond(rephrased: Completion) -> Trace:
        text = prompts["respond"].format(question=question, rephrase=rephrased.text.strip())
        (answer,) = await engine.generate(text, single(sampling))
        return finish(task, [step("rephrase", first_prompt, rephrased), step("respond", text, answer)])

    return await chains(await engine.generate(first_prompt, sampling), respond)


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    sol, question = task.solution(fields), task.question(fields, "toy")
    return [(PROMPTS["toy"]["rephrase"].format(question=question), sol.rephrase),
            (PROMPTS["toy"]["respond"].format(question=question, rephrase=sol.rephrase),
             f"{sol.reasoning} answer: {sol.answer}")]
