"""The serving engine: s2ray's VLLMEngine plus token streaming (the part of the engine only Serve needs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from s2ray.engine import VLLMEngine
from s2ray.methods.base import PromptTooLong, Sampling


@dataclass
class Delta:
    index: int  # which of the n choices
    text: str  # new text since the last delta
    tokens: int  # new tokens since the last delta
    finish_reason: str | None


class ServingEngine(VLLMEngine):
    def open_stream(self, prompt: str, sampling: Sampling) -> tuple[int, AsyncIterator[list[Delta]]]:
        """(prompt tokens, an iterator of deltas); PromptTooLong is raised here, before any byte is sent."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        ids = self.prompt_ids(prompt)
        room = self.cfg.max_model_len - len(ids)
        if room < 1:
            raise PromptTooLong(f"prompt is {len(ids)} tokens; the context holds {self.cfg.max_model_len}")
        params = self.sampling_params(sampling, room)
        params.output_kind = RequestOutputKind.DELTA

        async def deltas() -> AsyncIterator[list[Delta]]:
            async for out in self.llm.generate(TokensPrompt(prompt_token_ids=ids), params,
                                               request_id=self.request_id()):
                yield [Delta(o.index, o.text, len(o.token_ids), o.finish_reason) for o in out.outputs]

        return len(ids), deltas()

    async def check_health(self) -> None:
        await self.llm.check_health()
