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
