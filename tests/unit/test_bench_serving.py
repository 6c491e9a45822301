"""The serving benchmark's offline router replay (pure: recorded System 1 samples and System 2 answers)."""

from bench.serving import calibrate, replay
from s2ray.config import RouterConfig


def s1(id_, task, correct, lowest, tokens=2):
    return {"id": id_, "task": task, "status": 200, "agreement": 1.0, "mean_logprob": lowest / tokens,
            "lowest_logprob": lowest, "system1_tokens": tokens, "system1_correct": correct}


def s2(id_, correct, tokens=30):
    return {"id": id_, "status": 200, "correct": correct, "tokens": tokens}


# "sure" rows answer right with System 1; the unsure last_letter row is wrong there and right in System 2;
# arithmetic's System 1 is wrong and unsure every time: its samples are tokens spent for nothing
ROUTER = [s1("a", "last_letter", True, -0.01), s1("b", "last_letter", False, -0.9), s1("c", "arithmetic", False, -0.9),
          s1("d", "arithmetic", False, -0.8)]
SYSTEM2 = [s2("a", True), s2("b", True), s2("c", True, 20), s2("d", False, 20)]


def test_replay_escalates_below_the_token_threshold_and_sends_listed_tasks_straight():
    deep = {r["id"]: r for r in SYSTEM2}
    assert replay(ROUTER, deep, 0.0, None, None) == (1, 8, 0)
    assert replay(ROUTER, deep, 0.0, None, -0.5) == (3, 8 + 30 + 40, 3)
    assert replay(ROUTER, deep, 0.0, None, -0.5, frozenset(["arithmetic"])) == (3, 4 + 30 + 40, 3)


def test_calibrate_suggests_tasks_system1_has_not_learned():
    out = calibrate(ROUTER, SYSTEM2, best_accuracy=0.75, settings=RouterConfig(min_agreement=0.0,
                                                                               min_token_logprob=-0.5))
    assert out["system2_tasks"] == ["arithmetic"]
    assert out["per_task"]["arithmetic"]["straight_to_system2"]["accuracy"] == 0.5
    assert out["per_task"]["last_letter"]["routed"] == {"accuracy": 1.0, "tokens_vs_system2": 0.34,
                                                        "escalation_rate": 0.5}
    assert out["best"] is not None and out["best"]["accuracy"] >= 0.74


def test_a_phase_scores_answers_and_counts_lost_connections_as_server_errors():
    import asyncio

    from bench.serving import run_phase

    class Scripted:  # the load generator's interface: (HTTP status, response JSON) per request
        def __init__(self):
            self.replies = {"ok": (200, {"choices": [{"message": {"content": "answer: y"}}],
                                         "usage": {"completion_tokens": 3}}),
                            "busy": (503, {}), "lost": (599, {}), "bad": (400, {})}

        async def chat(self, body, timeout):
            return self.replies[body["messages"][0]["content"]]

    jobs = [{"id": q, "task": "last_letter", "label": "y", "max_tokens": 8, "question": q, "model": "system1"}
            for q in ("ok", "busy", "lost", "bad")]
    summary, records = asyncio.run(run_phase(Scripted(), "system1", jobs, 2, 1.0))
    assert summary["requests"] == 4 and summary["ok"] == 1
    assert (summary["errors_5xx"], summary["errors_4xx"]) == (2, 1)
    assert summary["accuracy"] == 0.25 and summary["generated_tokens"] == 3
    assert sorted(r["status"] for r in records) == [200, 400, 503, 599]


def test_rounds_send_each_model_rows_of_their_own_and_pool_them(monkeypatch):
    import asyncio

    import bench.serving as bench_serving
    from s2ray.config import load_config

    sent = []

    class Echo:  # answers every request right, with the router sure of itself
        def __init__(self, url, api_key, concurrency):
            pass

        async def chat(self, body, timeout):
            sent.append((body["model"], body["messages"][0]["content"]))
            info = {"escalated": False, "agreement": 1.0, "mean_logprob": 0.0, "lowest_logprob": 0.0,
                    "system1_tokens": 1, "system1_answer": ""}
            return 200, {"choices": [{"message": {"content": ""}}], "usage": {"completion_tokens": 1}, "s2ray": info}

        async def close(self):
            pass

    monkeypatch.setitem(bench_serving.CLIENTS, "echo", Echo)
    cfg = load_config("local-cpu")
    results, records, _, per_round = asyncio.run(bench_serving.bench(
        "http://unused", "key", cfg, ["last_letter", "coin_flip"], rows=3, concurrency=2, timeout=1.0, seed=5,
        client_name="echo", rounds=2))
    assert len(per_round) == 2 and all(set(r["p50_ms"]) == {"system1", "system2", "router"} for r in per_round)
    for system in ("system1", "system2", "router"):
        assert results[system]["requests"] == 6 and results[system]["errors_5xx"] == 0
        assert len({r["id"] for r in records[system]}) == 6  # the second round's rows are new ones
    assert {r["id"] for r in records["system1"]} == {r["id"] for r in records["router"]}  # the same rows each
    assert len(sent) == 3 + 6 * 3  # the warm-up requests, then 2 rounds x 3 rows x 3 models
    first, second = ([r["task"] for r in records["system1"][i * 3:(i + 1) * 3]] for i in range(2))
    assert set(first) == set(second) == {"last_letter", "coin_flip"}  # every round has every task


def test_grouped_order_sends_one_task_after_another_within_each_round(monkeypatch):
    import asyncio

    import bench.serving as bench_serving
    from s2ray.config import load_config

    class Refuser:  # takes the warm-up requests, then refuses every request (the order is what is checked)
        def __init__(self, url, api_key, concurrency):
            pass

        async def chat(self, body, timeout):
            return (200 if body["messages"][0]["content"] == "warm up" else 400), {}

        async def close(self):
            pass

    monkeypatch.setitem(bench_serving.CLIENTS, "refuser", Refuser)
    monkeypatch.setattr(bench_serving, "calibrate", lambda *a: {})
    _, records, _, _ = asyncio.run(bench_serving.bench(
        "http://unused", "key", load_config("local-cpu"), ["last_letter", "coin_flip"], rows=4, concurrency=1,
        timeout=1.0, seed=5, client_name="refuser", rounds=2, order="grouped"))
    tasks = [r["task"] for r in records["system1"]]  # one in flight: records in the order sent
    assert tasks == ["last_letter", "last_letter", "coin_flip", "coin_flip"] * 2
