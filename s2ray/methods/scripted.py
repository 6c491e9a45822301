"""A scripted engine for unit tests of method programs: replies come from a function of the prompt, no model."""

from __future__ import annotations

from typing import Callable

from s2ray.methods.base import Completion, Sampling


class ScriptedEngine:
    """Answers each call with `reply(prompt, i)` for sample i; records every (prompt, sampling) it was sent."""

    def __init__(self, reply: Callable[[str, int], str]):
        self.reply = reply
        self.calls: list[tuple[str, Sampling]] = []

    async def generate(self, prompt: str, sampling: Sampling) -> list[Completion]:
        self.calls.append((prompt, sampling))
        texts = [self.reply(prompt, i) for i in range(sampling.n)]
        return [Completion(t, len(prompt.split()), len(t.split())) for t in texts]
