"""CoreThread (engine.core=thread) against a scripted engine with LLMEngine's surface, and engine_env's choices."""

import asyncio
import threading
from types import SimpleNamespace

import pytest

from s2ray.config import EngineConfig
from s2ray.engine import CoreThread, engine_env


class ScriptedEngine:
    """LLMEngine's add_request / abort_request / has_unfinished_requests / step: a request of `steps` outputs each
    step (the last one finished); a prompt of 'bad' is refused at add_request, 'boom' makes step() raise."""

    def __init__(self, steps: int = 3):
        self.steps, self.live, self.aborted, self.callers = steps, {}, [], set()

    def add_request(self, request_id, prompt, params):
        self.callers.add(threading.current_thread().name)
        if prompt == "bad":
            raise ValueError(f"request {request_id}: bad prompt")
        self.live[request_id] = [prompt, 0]

    def abort_request(self, request_ids):
        self.callers.add(threading.current_thread().name)
        for rid in request_ids:
            self.aborted.append(rid)
            self.live.pop(rid, None)

    def has_unfinished_requests(self):
        return bool(self.live)

    def step(self):
        self.callers.add(threading.current_thread().name)
        outs = []
        for rid, state in list(self.live.items()):
            if state[0] == "boom":
                raise RuntimeError("kernel exploded")
            state[1] += 1
            finished = state[1] >= self.steps
            outs.append(SimpleNamespace(request_id=rid, finished=finished, text=f"{state[0]}:{state[1]}"))
            if finished:
                del self.live[rid]
        return outs


async def collect(core, rid, prompt):
    return [o.text async for o in core.outputs(rid, prompt, None)]


def test_every_request_gets_its_own_outputs_and_only_the_core_thread_touches_the_engine():
    engine = ScriptedEngine(steps=3)
    core = CoreThread(engine)

    async def main():
        return await asyncio.gather(*(collect(core, f"r{i}", f"p{i}") for i in range(50)))

    results = asyncio.run(main())
    assert results == [[f"p{i}:1", f"p{i}:2", f"p{i}:3"] for i in range(50)]
    assert engine.callers == {"s2ray-engine-core"}
    asyncio.run(core.check_health())
    core.shutdown()
    assert not core.thread.is_alive()


def test_a_refused_request_fails_alone():
    core = CoreThread(ScriptedEngine(steps=2))

    async def main():
        return await asyncio.gather(collect(core, "a", "bad"), collect(core, "b", "ok"), return_exceptions=True)

    bad, ok = asyncio.run(main())
    assert isinstance(bad, ValueError) and "request a" in str(bad)
    assert ok == ["ok:1", "ok:2"]
    core.shutdown()


def test_a_caller_that_stops_listening_aborts_its_request():
    engine = ScriptedEngine(steps=10**9)  # never finishes by itself: only the abort can end it
    core = CoreThread(engine)

    async def main():
        stream = core.outputs("gone", "p", None)
        await stream.__anext__()
        await stream.aclose()
        for _ in range(100):
            if "gone" in engine.aborted:
                return
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert engine.aborted == ["gone"] and not engine.live
    core.shutdown()


def test_a_failing_step_fails_every_request_and_the_health_check():
    core = CoreThread(ScriptedEngine(steps=5))

    async def main():
        return await asyncio.gather(collect(core, "x", "boom"), collect(core, "y", "fine"), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "kernel exploded" in str(r) for r in results)
    with pytest.raises(RuntimeError, match="kernel exploded"):
        asyncio.run(core.check_health())
    with pytest.raises(RuntimeError, match="failed earlier"):
        asyncio.run(collect(core, "z", "later"))


def test_engine_env_malloc(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr("s2ray.engine.find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    assert engine_env(EngineConfig(malloc="auto"))["LD_PRELOAD"] == "libtcmalloc_minimal.so.4"
    assert "LD_PRELOAD" not in engine_env(EngineConfig(malloc="system"))
    monkeypatch.setenv("LD_PRELOAD", "libother.so")  # kept, with tcmalloc after it
    assert engine_env(EngineConfig(malloc="tcmalloc"))["LD_PRELOAD"] == "libother.so libtcmalloc_minimal.so.4"
    monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")  # already preloaded: nothing to add
    assert "LD_PRELOAD" not in engine_env(EngineConfig(malloc="auto"))
    monkeypatch.setattr("s2ray.engine.find_tcmalloc", lambda: None)
    assert "LD_PRELOAD" not in engine_env(EngineConfig(malloc="auto"))
    with pytest.raises(RuntimeError, match="engine.malloc"):
        engine_env(EngineConfig(malloc="tcmalloc"))


def test_engine_env_core_and_executor():
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine_env(EngineConfig(malloc="system"))
    assert engine_env(EngineConfig(malloc="system"), core="thread")["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert engine_env(EngineConfig(malloc="system", executor="uni"))["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_auto_core_is_thread_for_batch_work_and_process_for_serve():
    from s2ray.engine import VLLMEngine
    from s2ray.serve.streaming import ServingEngine

    assert (VLLMEngine.AUTO_CORE, ServingEngine.AUTO_CORE) == ("thread", "process")


def test_shutdown_fails_requests_in_flight():
    core = CoreThread(ScriptedEngine(steps=10**9))

    async def main():
        stream = core.outputs("long", "p", None)
        await stream.__anext__()
        core.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            async for _ in stream:
                pass

    asyncio.run(main())
    assert not core.thread.is_alive()


def test_a_caller_whose_event_loop_closed_does_not_stop_the_engine():
    engine = ScriptedEngine(steps=50)
    core = CoreThread(engine)

    async def leave_early():
        stream = core.outputs("orphan", "p", None)
        await stream.__anext__()  # then asyncio.run closes this loop with the request unfinished

    asyncio.run(leave_early())
    assert asyncio.run(collect(core, "next", "q")) == [f"q:{i}" for i in range(1, 51)]
    asyncio.run(core.check_health())
    assert "orphan" not in engine.live
    core.shutdown()


def test_release_openmp_pool_ends_the_calling_threads_openmp_workers():
    """A thread-core engine is built in one thread and stepped in another: the building thread's OpenMP pool must go,
    or libgomp sees more workers than cores and stops spin-waiting (measured: a quarter of the throughput)."""
    import os
    import time

    torch = pytest.importorskip("torch")
    from s2ray.engine import release_openmp_pool

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    counts, released = [], []

    def build():
        torch.set_num_threads(2)  # this thread's team: itself and one pool worker
        torch.ones(1 << 22).exp_()  # large enough for a parallel region
        counts.append(threads())
        released.append(release_openmp_pool())
        deadline = time.monotonic() + 5
        while threads() >= counts[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        counts.append(threads())

    worker = threading.Thread(target=build)
    worker.start()
    worker.join()
    assert released == [True]
    assert counts[1] == counts[0] - 1, f"threads before/after the release: {counts}"
