"""Branch-Solve-Merge (as a judge): branch into criteria, solve each criterion, merge the verdicts."""

from __future__ import annotations

import asyncio
import random
from types import ModuleType
from typing import Any

from s2ray.methods.base import Completion, Engine, Sampling, Trace, chains, finish, single, step, templates

NAME = "bsm"
MAX_CRITERIA = 5
PROMPTS = {
    "toy": {"branch": "branch criteria. {question}", "solve": "solve {criterion}. {question}",
            "merge": "merge verdicts.\n{verdicts}"},
    "chat": {
        "branch": "We want to judge the two responses below. Propose up to five criteria for judging them, "
                  "as one comma-separated line (e.g. correctness, brevity).\n\n{question}",
        "solve": "Judge the two responses below only on this criterion: {criterion}. Explain briefly and end "
                 "with 'winner A', 'winner B' or 'winner tie'.\n\n{question}",
        "merge": "Here are verdicts on two responses, one per criterion:\n{verdicts}\nMerge them into one "
                 "final verdict. End with 'Answer: A' or 'Answer: B'.",
    },
}


def criteria_of(text: str) -> list[str]:
    """Criteria named by a branch output: comma- or line-separated, de-duplicated, at most MAX_CRITERIA."""
    names = [c.strip(" .-*\t").lower() for c in text.replace("\n", ",").split(",")]
    return list(dict.fromkeys(n for n in names if n))[:MAX_CRITERIA]


async def run(engine: Engine, task: ModuleType, fields: dict[str, Any], sampling: Sampling, style: str) -> list[Trace]:
    prompts, question = templates(PROMPTS, style, NAME), task.question(fields, style)
    branch_prompt = prompts["branch"].format(question=question)

    async def solve_and_merge(branched: Completion) -> Trace:
        criteria = criteria_of(branched.text) or ["overall"]
        solve_prompts = [prompts["solve"].format(criterion=c, question=question) for c in criteria]
        solved = await asyncio.gather(*(engine.generate(p, single(sampling)) for p in solve_prompts))
        verdicts = "\n".join(f"{c}: {s[0].text.strip()}" for c, s in zip(criteria, solved))
        merge_prompt = prompts["merge"].format(verdicts=verdicts)
        (merged,) = await engine.generate(merge_prompt, single(sampling))
        steps = [step("branch", branch_prompt, branched)]
        steps += [step(f"solve:{c}", p, s[0]) for c, p, s in zip(criteria, solve_prompts, solved)]
        return finish(task, steps + [step("merge", merge_prompt, merged)])

    return await chains(await engine.generate(branch_prompt, sampling), solve_and_merge)


def demonstrations(task: ModuleType, fields: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    sol, question = task.solution(fields), task.question(fields, "toy")
    toy = PROMPTS["toy"]
    verdicts = "\n".join(f"{c}: {text}" for c, text in sol.criteria.items())
    return ([(toy["branch"].format(question=question), ", ".join(sol.criteria))]
            + [(toy["solve"].format(criterion=c, question=question), text) for c, text in sol.criteria.items()]
            + [(toy["merge"].format(verdicts=verdicts), f"answer: {sol.answer}")])
