"""Method programs driven by a scripted engine: calls, prompts, chains, samples, answers."""

import asyncio

import pytest

from s2ray.methods import METHODS, Sampling
from s2ray.methods.bsm import criteria_of
from s2ray.methods.scripted import ScriptedEngine
from s2ray.tasks import TASKS

LL = TASKS["last_letter"]
WORDS = {"words": ["apple", "river", "stone"]}


def run(method, task, fields, engine, n=1, style="toy"):
    return asyncio.run(METHODS[method].run(engine, task, fields, Sampling(n=n, temperature=0.7), style))


def test_direct_is_one_call_per_sample_batch():
    engine = ScriptedEngine(lambda prompt, i: "ere")
    traces = run("direct", LL, WORDS, engine, n=3)
    assert len(engine.calls) == 1 and engine.calls[0][1].n == 3
    assert engine.calls[0][0] == "last letters: apple river stone"
    assert [t.answer for t in traces] == ["ere"] * 3
    assert all(t.generated_tokens == 1 for t in traces)


@pytest.mark.parametrize("method", ["cot", "rar1"])
def test_single_call_methods_sample_n_at_once(method):
    engine = ScriptedEngine(lambda prompt, i: f"steps {i}. answer: {'ere' if i else 'xyz'}")
    traces = run(method, LL, WORDS, engine, n=4)
    assert len(engine.calls) == 1 and engine.calls[0][1].n == 4
    assert [t.answer for t in traces] == ["xyz", "ere", "ere", "ere"]


def test_rar2_rephrases_once_with_n_then_responds_per_chain():
    def reply(prompt, i):
        if prompt.startswith("rephrase."):
            return f"rephrasing {i}"
        assert "\nrephrased: rephrasing " in prompt and prompt.endswith("respond.")
        return "apple e, river r, stone e. answer: ere"

    engine = ScriptedEngine(reply)
    traces = run("rar2", LL, WORDS, engine, n=3)
    assert [c[1].n for c in engine.calls] == [3, 1, 1, 1]
    assert {c[0].split("rephrased: ")[1].split("\n")[0] for c in engine.calls[1:]} == {f"rephrasing {i}" for i in range(3)}
    assert [s.name for s in traces[0].steps] == ["rephrase", "respond"]
    assert all(t.answer == "ere" for t in traces)


def test_s2a_answers_the_rewritten_question_not_the_original():
    oq = TASKS["opinion_qa"]
    fields = {"question": "which is larger: 10 or 90?", "opinion": "i think it is 10.", "opinion_first": False}
    engine = ScriptedEngine(lambda p, i: "which is larger: 10 or 90?" if p.startswith("rewrite") else
                            ("10" if "think" in p else "90"))
    (trace,) = run("s2a", oq, fields, engine)
    assert engine.calls[1][0] == "which is larger: 10 or 90?"
    assert trace.answer == "90" and oq.score(trace.answer, oq.gold(fields))


def test_bsm_branches_solves_each_criterion_and_merges():
    pj = TASKS["pair_judge"]
    fields = {"question": "which is larger: 10 or 90?", "answer_a": "10", "answer_b": "90"}

    def reply(prompt, i):
        if prompt.startswith("branch"):
            return "correct, brief"
        if prompt.startswith("solve correct"):
            return "truth 90. A 10 wrong. B 90 right. winner B"
        if prompt.startswith("solve brief"):
            return "A bare. B bare. winner tie"
        assert "correct: truth 90" in prompt and "brief: A bare" in prompt
        return "answer: B"

    engine = ScriptedEngine(reply)
    traces = run("bsm", pj, fields, engine, n=2)
    assert [t.answer for t in traces] == ["B", "B"]
    assert [s.name for s in traces[0].steps] == ["branch", "solve:correct", "solve:brief", "merge"]
    assert len(engine.calls) == 1 + 2 * 3


def test_bsm_criteria_parsing():
    assert criteria_of("correct, brief") == ["correct", "brief"]
    assert criteria_of("- Correctness\n- Brevity\n- correctness") == ["correctness", "brevity"]
    assert criteria_of("a,b,c,d,e,f,g") == ["a", "b", "c", "d", "e"]
    assert criteria_of(" ,\n ") == []


def test_bsm_with_no_criteria_still_judges_overall():
    pj = TASKS["pair_judge"]
    fields = {"question": "q?", "answer_a": "x", "answer_b": "y"}
    engine = ScriptedEngine(lambda p, i: "" if p.startswith("branch") else "winner A. answer: A")
    (trace,) = run("bsm", pj, fields, engine)
    assert trace.steps[1].name == "solve:overall" and trace.answer == "A"


def test_unparseable_final_output_abstains():
    engine = ScriptedEngine(lambda p, i: "I am not sure")
    (trace,) = run("cot", TASKS["arithmetic"], {"expression": "1+2"}, engine)
    assert trace.answer is None


@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_both_styles_and_same_shape(method):
    module = METHODS[method]
    assert set(module.PROMPTS) == {"toy", "chat"}
    assert set(module.PROMPTS["toy"]) == set(module.PROMPTS["chat"])
    assert callable(module.run) and callable(module.demonstrations) and module.NAME == method


def test_chat_style_uses_natural_prompts_and_unknown_style_fails():
    engine = ScriptedEngine(lambda p, i: "Answer: ere")
    (trace,) = run("rar1", LL, WORDS, engine, style="chat")
    assert engine.calls[0][0].startswith('Take the last letter of each word in "apple river stone"')
    assert trace.answer == "ere"
    with pytest.raises(ValueError, match="no prompt style 'fancy'"):
        run("rar1", LL, WORDS, engine, style="fancy")
