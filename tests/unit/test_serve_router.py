"""The router's decision and the programs behind each served model name, on scripted engines (no model)."""

import asyncio

import pytest

from s2ray.config import RouterConfig
from s2ray.methods import Completion, Sampling
from s2ray.methods.scripted import ScriptedEngine
from s2ray.serve import systems
from s2ray.serve.router import decide


def test_unanimous_samples_answer_with_system1():
    d = decide(["ere", "ere", "ere", "ere"], [-0.4, -0.4, -0.4, -0.4], [4, 4, 4, 4], 0.75)
    assert (d.answer, d.index, d.agreement, d.escalate) == ("ere", 0, 1.0, False)
    assert d.mean_logprob == pytest.approx(-0.1)


def test_disagreement_below_the_threshold_escalates():
    d = decide(["ere", "er", "ere", "ee"], [None] * 4, [3] * 4, 0.75)
    assert d.answer == "ere" and d.agreement == 0.5 and d.escalate and "agreement" in d.reason


def test_abstentions_count_against_agreement():
    assert decide(["ere", None, "ere", "ere"], [None] * 4, [1] * 4, 0.75).escalate is False
    assert decide(["ere", None, None, "ere"], [None] * 4, [1] * 4, 0.75).escalate is True
    d = decide([None, None], [None, None], [1, 1], 0.5)
    assert d.answer is None and d.escalate


def test_low_logprob_escalates_even_when_samples_agree():
    d = decide(["a", "a"], [-3.0, -3.0], [2, 2], 0.5, min_mean_logprob=-1.0)
    assert d.escalate and d.mean_logprob == pytest.approx(-1.5) and "log-probability" in d.reason
    assert not decide(["a", "a"], [-1.0, -1.0], [2, 2], 0.5, min_mean_logprob=-1.0).escalate


def test_one_unsure_token_escalates_where_the_mean_does_not():
    # one greedy sample of 5 tokens: four sure, one at -1.2 -> mean -0.24, lowest -1.2
    d = decide(["rlenr"], [-1.2], [5], 1.0, min_mean_logprob=-0.5, lowest=[-1.2], min_token_logprob=-1.0)
    assert d.escalate and d.lowest_logprob == -1.2 and "token" in d.reason
    assert not decide(["rlenr"], [-1.2], [5], 1.0, min_mean_logprob=-0.5, lowest=[-1.2]).escalate
    # the lowest is taken over the majority samples only
    d = decide(["a", "a", "b"], [None] * 3, [1] * 3, 0.5, lowest=[-0.1, -0.2, -9.0], min_token_logprob=-1.0)
    assert d.lowest_logprob == -0.2 and not d.escalate


def test_ties_go_to_the_answer_seen_first():
    assert decide(["b", "a", "a", "b"], [None] * 4, [1] * 4, 0.0).answer == "b"


class LogprobEngine(ScriptedEngine):
    """Scripted replies, each with a log-probability of -0.1 per token."""

    async def generate(self, prompt, sampling):
        return [Completion(c.text, c.prompt_tokens, c.output_tokens, -0.1 * c.output_tokens)
                for c in await super().generate(prompt, sampling)]


ROUTER = RouterConfig(method="rar1", samples=4, temperature=0.7, max_tokens=8, min_agreement=0.75)
QUESTION = "last letters: apple river stone"


def route(system1_replies, task=None):
    s1 = LogprobEngine(lambda p, i: system1_replies[i])
    s2 = ScriptedEngine(lambda p, i: "rephrased: join. apple e, river r, stone e. answer: ere")
    answer = asyncio.run(systems.route(s1, s2, QUESTION, QUESTION, Sampling(max_tokens=64), "toy", ROUTER, "rar1",
                                       task))
    return answer, s1, s2


def test_router_returns_system1_when_sure_and_never_calls_system2():
    answer, s1, s2 = route(["er"] * 4)
    assert answer.texts == ["er"] and not answer.info["escalated"] and s2.calls == []
    ((_, sampling),) = s1.calls
    assert sampling.n == 4 and sampling.temperature == 0.7 and sampling.max_tokens == 8 and sampling.logprobs == 0
    assert answer.completion_tokens == 4  # the four one-word samples


def test_router_escalates_to_the_system2_program_when_unsure():
    answer, _, s2 = route(["er", "ere", "e r e", "x"], task="last_letter")
    assert answer.texts == ["ere"] and answer.info["escalated"] and answer.info["method"] == "rar1"
    assert s2.calls[0][0] == "rephrase and respond. " + QUESTION and s2.calls[0][1].n == 1
    assert answer.completion_tokens == 6 + 10  # System 1 samples ("e r e" is 3 words) + the System 2 step


def test_tasks_listed_in_system2_tasks_skip_system1():
    router = ROUTER.model_copy(update={"system2_tasks": ["last_letter"]})
    s1 = LogprobEngine(lambda p, i: "er")
    s2 = ScriptedEngine(lambda p, i: "rephrased: join. apple e, river r, stone e. answer: ere")
    answer = asyncio.run(systems.route(s1, s2, QUESTION, QUESTION, Sampling(max_tokens=64), "toy", router, "rar1",
                                       "last_letter"))
    assert s1.calls == [] and answer.texts == ["ere"] and answer.completion_tokens == 10
    assert answer.info["escalated"] and "system2_tasks" in answer.info["reason"] and answer.info["method"] == "rar1"
    # other tasks, and requests naming no task, still try System 1 first
    for task in ("coin_flip", None):
        s1 = LogprobEngine(lambda p, i: "yes")
        answer = asyncio.run(systems.route(s1, s2, QUESTION, QUESTION, Sampling(max_tokens=64), "toy", router,
                                           "rar1", task))
        assert not answer.info["escalated"] and len(s1.calls) == 1 and answer.texts == ["yes"]


def test_system2_tasks_must_be_known_tasks():
    with pytest.raises(ValueError, match="unknown task 'sums'"):
        RouterConfig(system2_tasks=["sums"])


def test_system2_free_text_answers_with_the_normalised_final_segment():
    engine = ScriptedEngine(lambda p, i: "steps. Answer: The Answer Is 9.\nmore")
    answer = asyncio.run(systems.system2(engine, "cot", "compute: 2+3+4", Sampling(n=2), "toy"))
    assert answer.texts == ["The Answer Is 9"] * 2 and answer.info == {"method": "cot", "steps": 2}
    assert engine.calls[0][0] == "step by step. compute: 2+3+4"


def test_system1_is_one_call_with_the_requested_sampling():
    engine = ScriptedEngine(lambda p, i: "ere")
    answer = asyncio.run(systems.system1(engine, QUESTION, Sampling(n=2, max_tokens=1)))
    assert answer.texts == ["ere", "ere"] and answer.finish_reasons == ["length", "length"]
    assert engine.calls == [(QUESTION, Sampling(n=2, max_tokens=1))]


def test_router_never_returns_a_system1_answer_cut_off_by_its_token_cap():
    cut = "one two three four five six seven eight"  # router.max_tokens (8) words: the sample ran out of tokens
    answer, _, s2 = route([cut] * 4)  # free text: all four agree on the cut-off text
    assert answer.info["escalated"] and answer.texts == ["ere"] and len(s2.calls) == 1
    assert answer.finish_reasons == ["stop"]


class ContextEngine(ScriptedEngine):
    """Scripted replies that stopped because the context ran out: the engine says "length" below max_tokens."""

    async def generate(self, prompt, sampling):
        return [Completion(c.text, c.prompt_tokens, c.output_tokens, finish_reason="length")
                for c in await super().generate(prompt, sampling)]


def test_finish_reason_is_the_engines_where_it_gives_one():
    answer = asyncio.run(systems.system1(ContextEngine(lambda p, i: "er"), QUESTION, Sampling(max_tokens=64)))
    assert answer.finish_reasons == ["length"]  # 1 token of 64, but the context was full
    s1 = ContextEngine(lambda p, i: "er")
    s2 = ScriptedEngine(lambda p, i: "rephrased: join. apple e, river r, stone e. answer: ere")
    answer = asyncio.run(systems.route(s1, s2, QUESTION, QUESTION, Sampling(max_tokens=64), "toy", ROUTER, "rar1",
                                       "last_letter"))
    assert answer.info["escalated"] and answer.texts == ["ere"]  # cut-off System 1 samples abstain
