"""What each served model name runs, written against the methods' `Engine` protocol (no ray/vllm imports).

- System 1: the System 1 prompt (the distilled model's template around the user text), one engine call.
- System 2: a method program on the base model, with the user text as the question; the reply is the final answer.
- Router: k System 1 samples; if `router.decide` says unsure, the System 2 program answers instead.

Free text: a request is a question with no task, so System 2 programs run on `FreeText`: question = the user text,
answer = the final segment of the last step (after "answer:"), normalised. A request may name a task (field
`task`, e.g. `extra_body={"task": "last_letter"}` in the openai client) to use that task's answer extraction and,
for the router, that task's configured System 2 method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from s2ray.methods import Completion, Engine, Sampling, get_method
from s2ray.serve.router import Decision, decide
from s2ray.tasks import TASKS
from s2ray.tasks.common import final_segment


class FreeText:
    """The task adapter of a free-text question: methods format prompts with it and extract answers with it."""

    NAME = "free_text"

    @staticmethod
    def question(fields: dict[str, Any], style: str) -> str:
        return fields["question"]

    @staticmethod
    def extract(text: str) -> str | None:
        answer = re.sub(r"\s+", " ", final_segment(text)).strip(" \t\"'.")
        return answer or None


class NamedTask(FreeText):
    """Free text whose answers are extracted as the named task's (e.g. last_letter: letters only)."""

    def __init__(self, task: ModuleType):
        self.NAME, self.extract = task.NAME, task.extract


def task_module(name: str | None) -> FreeText:
    return FreeText() if name is None else NamedTask(TASKS[name])


@dataclass
class Answer:
    """The reply to one request: `texts[i]` is choice i; token counts cover every engine call it made."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def _finish(output_tokens: int, max_tokens: int) -> str:
    return "length" if output_tokens >= max_tokens else "stop"


def _reason(completion: Completion, max_tokens: int) -> str:
    """The engine's finish reason (it also says "length" when the context, not max_tokens, ran out), else ours."""
    return completion.finish_reason or _finish(completion.output_tokens, max_tokens)


async def system1(engine: Engine, prompt: str, sampling: Sampling) -> Answer:
    completions = await engine.generate(prompt, sampling)
    return Answer([c.text for c in completions], completions[0].prompt_tokens,
                  sum(c.output_tokens for c in completions),
                  [_reason(c, sampling.max_tokens) for c in completions])


async def system2(engine: Engine, method: str, question: str, sampling: Sampling, style: str,
                  task: str | None = None) -> Answer:
    module = task_module(task)
    traces = await get_method(method).run(engine, module, {"question": question}, sampling, style)
    texts = [t.answer if t.answer is not None else FreeText.extract(t.output) or t.output.strip() for t in traces]
    return Answer(texts, sum(t.prompt_tokens for t in traces), sum(t.generated_tokens for t in traces),
                  [_finish(t.steps[-1].output_tokens, sampling.max_tokens) for t in traces],
                  {"method": method, "steps": sum(len(t.steps) for t in traces)})


async def route(system1_engine: Engine, base_engine: Engine, prompt: str, question: str, sampling: Sampling,
                style: str, router: Any, method: str, task: str | None = None) -> Answer:
    """`router` is a RouterConfig (samples, temperature, max_tokens, min_agreement, min_mean_logprob,
    min_token_logprob, system2_tasks)."""
    module = task_module(task)
    cheap = Sampling(n=router.samples, temperature=router.temperature, top_p=sampling.top_p,
                     max_tokens=min(router.max_tokens, sampling.max_tokens), logprobs=0)
    if task in router.system2_tasks:  # System 1 has not learned this task: spend no System 1 sample on it
        samples = []
        verdict = Decision(None, None, 0.0, None, None, True,
                           f"task {task!r} goes straight to System 2 (serve.router.system2_tasks)")
    else:
        samples = await system1_engine.generate(prompt, cheap)
        # a sample cut off by router.max_tokens (or the context) abstains: a truncated answer is never returned
        answers = [None if _reason(c, cheap.max_tokens) == "length" else module.extract(c.text) for c in samples]
        verdict = decide(answers, [c.logprob for c in samples],
                         [c.output_tokens for c in samples], router.min_agreement, router.min_mean_logprob,
                         [c.lowest_logprob for c in samples], router.min_token_logprob)
    spent = sum(c.output_tokens for c in samples)
    info = {"escalated": verdict.escalate, "reason": verdict.reason, "agreement": round(verdict.agreement, 3),
            "mean_logprob": None if verdict.mean_logprob is None else round(verdict.mean_logprob, 4),
            "lowest_logprob": None if verdict.lowest_logprob is None else round(verdict.lowest_logprob, 4),
            "system1_answer": verdict.answer, "system1_tokens": spent}
    if not verdict.escalate:
        return Answer([samples[verdict.index].text], samples[0].prompt_tokens, spent,
                      [_reason(samples[verdict.index], cheap.max_tokens)], info)
    deep = await system2(base_engine, method, question, replace(sampling, n=1), style, task)
    system1_prompt_tokens = samples[0].prompt_tokens if samples else 0
    return Answer(deep.texts, system1_prompt_tokens + deep.prompt_tokens, spent + deep.completion_tokens,
                  deep.finish_reasons, {**info, **deep.info})
