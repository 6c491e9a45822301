"""System 2 Attention: rewrite the input without opinions or irrelevant text, then answer the rewritten input."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Completion, Engine, Sampling, Trace, chains, finish, single, step, templates

NAME = "s2a"
PROMPTS = {
    "toy": {"rewrite": "rewrite without opinions: {question}", "answer": "{rewrite}"},
    "chat": {
        "rewrite": "Given the following text by a user, extract the part that is unbiased and not their "
                   "opinion, so that using that text alone would be good context plus question for providing an "
                   "unbiased answer to the question portion of the text. Start your answer with "
                   "\"Unbiased text context (includes all content except user's bias):\".\n\n"
                   "Text by User: {question}",
        "answer": "{rewrite}\nAnswer in an unbiased way. End with 'Answer: <answer>'.",
    },
}


def _clean(rewrite: str) -> str:
    return rewrite.split("(includes all content except user's bias):")[-1].strip()


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    prompts = templates(PROMPTS, style, NAME)
    first_prompt = prompts["rewrite"].format(question=task.question(fields, style))

    async def answer(rewritten: Completion) -> Trace:
        text = prompts["answer"].format(rewrite=_clean(rewritten.text))
        (final,) = await engine.generate(text, single(sampling))
        return finish(task, [step("rewrite", first_prompt, rewritten), step("answer", text, final)])

    return await chains(await engine.generate(first_prompt, sampling), answer)


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    sol = task.solution(fields)
    return [(PROMPTS["toy"]["rewrite"].format(question=task.question(fields, "toy")), sol.rewrite),
            (PROMPTS["toy"]["answer"].format(rewrite=sol.rewrite), sol.answer)]
