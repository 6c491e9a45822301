"""What every System 2 program is written against: sampling settings, the engine protocol, traces.

A method module defines NAME, PROMPTS ({style: {step: template}}), an async `run(engine, task, fields, sampling,
style) -> list[Trace]` (one trace per sample, `sampling.n` of them) and `demonstrations(task, fields, rng)`, the
(user, reply) pairs an ideal run writes, from which the toy corpus teaches the toy model each step's format.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Awaitable, Callable, Protocol

STYLES = ("toy", "chat")  # toy: the toy model's formats; chat: natural prompts for instruction-tuned models


class PromptTooLong(ValueError):
    """A prompt that does not fit the model's context: a per-row error, never a reason to stop a job."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for one engine call (`n` samples share the prompt's prefill)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    logprobs: int | None = None

    def __post_init__(self) -> None:
        assert self.n >= 1, f"Sampling.n must be >= 1, got {self.n}"
        assert self.temperature >= 0, f"Sampling.temperature must be >= 0, got {self.temperature}"
        assert 0 < self.top_p <= 1, f"Sampling.top_p must be in (0, 1], got {self.top_p}"
        assert self.max_tokens >= 1, f"Sampling.max_tokens must be >= 1, got {self.max_tokens}"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    output_tokens: int
    logprob: float | None = None  # cumulative log-probability of the generated tokens, when asked for
    lowest_logprob: float | None = None  # the least likely generated token's log-probability, when asked for
    finish_reason: str | None = None  # the engine's ("stop", "length": out of max_tokens or of context); None: unknown


class Engine(Protocol):
    async def generate(self, prompt: str, sampling: Sampling) -> list[Completion]:
        """`sampling.n` completions of one user message (the engine applies the model's chat template)."""
        ...


@dataclass(frozen=True)
class Step:
    name: str
    prompt: str
    output: str
    prompt_tokens: int
    output_tokens: int
    logprob: float | None = None


@dataclass
class Trace:
    """One sample of a method program: every call it made, and the final answer (None = abstained)."""

    steps: list[Step] = field(default_factory=list)
    answer: str | None = None

    @property
    def output(self) -> str:
        return self.steps[-1].output if self.steps else ""

    @property
    def generated_tokens(self) -> int:
        return sum(s.output_tokens for s in self.steps)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)


def step(name: str, prompt: str, completion: Completion) -> Step:
    return Step(name, prompt, completion.text, completion.prompt_tokens, completion.output_tokens,
                completion.logprob)


def finish(task: ModuleType, steps: list[Step]) -> Trace:
    return Trace(steps=steps, answer=task.extract(steps[-1].output))


def single(sampling: Sampling) -> Sampling:
    """The settings for a later step of one chain: one sample, same temperature."""
    return replace(sampling, n=1)


async def chains(first: list[Completion], then: Callable[[Completion], Awaitable[Trace]]) -> list[Trace]:
    """Continue each first-step sample as its own chain, all chains concurrently on the engine. A chain whose later
    prompt outgrows the context (its first step wrote too much) abstains, its first step's tokens counted; the row's
    other chains go on. A first prompt that does not fit raises before this, for the whole row."""
    async def chain(c: Completion) -> Trace:
        try:
            return await then(c)
        except PromptTooLong:
            return Trace(steps=[step("cut: the next prompt is too long for the context", "", c)], answer=None)

    return list(await asyncio.gather(*(chain(c) for c in first)))


def templates(prompts: dict[str, dict[str, str]], style: str, method: str) -> dict[str, str]:
    """A method's prompt templates in one style, with an error naming the method and the styles it has."""
    if style not in prompts:
        raise ValueError(f"method {method!r} has no prompt style {style!r}; styles: {', '.join(prompts)}")
    return prompts[style]
