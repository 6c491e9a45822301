import json
import random

import pytest

from s2ray.tasks import TASKS, RowError, make_rows, read_jsonl, validate_row
from s2ray.tasks.common import SPLITS, draw, final_segment, split_of

FIELDS = ("id", "task", "label")


def fields_of(row):
    return {k: v for k, v in row.items() if k not in FIELDS}


@pytest.mark.parametrize("name", TASKS)
def test_rows_are_deterministic_and_splits_disjoint(name):
    task = TASKS[name]
    assert make_rows(task, "test", 50, seed=3) == make_rows(task, "test", 50, seed=3)
    keys = {}
    for split in SPLITS:
        rows = make_rows(task, split, 200, seed=0)
        assert all(split_of(name, fields_of(r)) == split for r in rows)
        keys[split] = {json.dumps(fields_of(r), sort_keys=True) for r in rows}
    assert not keys["train"] & keys["unlabelled"]
    assert not keys["train"] & keys["test"]
    assert not keys["unlabelled"] & keys["test"]


@pytest.mark.parametrize("name", TASKS)
def test_solution_answer_is_extracted_and_scores(name):
    task = TASKS[name]
    for row in make_rows(task, "train", 30, seed=1):
        sol = task.solution(fields_of(row))
        assert sol.answer == row["label"]
        assert task.score(task.extract(f"{sol.reasoning} answer: {sol.answer}"), row["label"])
        assert task.score(task.extract(sol.answer), row["label"])


@pytest.mark.parametrize("name", TASKS)
def test_extract_abstains_on_unparseable_text(name):
    assert TASKS[name].extract("") is None
    assert TASKS[name].extract("answer: ???") is None


@pytest.mark.parametrize("name", TASKS)
def test_chat_and_toy_questions_differ_but_both_exist(name):
    task = TASKS[name]
    fields = fields_of(make_rows(task, "test", 1, seed=0)[0])
    assert task.question(fields, "toy") and task.question(fields, "chat")


def test_direct_answers_are_weak_for_natural_reasons():
    rng = random.Random(0)
    ll = TASKS["last_letter"]
    assert ll.direct_demo({"words": ["apple", "river"]}, rng) == "er"
    assert ll.direct_demo({"words": ["apple", "river", "stone"]}, rng) is None  # only short inputs
    oq = TASKS["opinion_qa"]
    wrong = {"question": "which is larger: 10 or 90?", "opinion": "i think it is 10.", "opinion_first": False}
    assert oq.direct_demo(wrong, rng) == "10" and oq.gold(wrong) == "90"  # sycophantic
    pj = TASKS["pair_judge"]
    b_better = {"question": "which is larger: 10 or 90?", "answer_a": "10", "answer_b": "90"}
    verdicts = [pj.direct_demo(b_better, random.Random(i)) for i in range(200)]
    assert pj.gold(b_better) == "B" and 0.6 < verdicts.count("A") / 200 < 0.8  # position bias


def test_pair_judge_rules_and_swap():
    pj = TASKS["pair_judge"]
    both_right = {"question": "which is larger: 10 or 90?", "answer_a": "it is 90", "answer_b": "90"}
    assert pj.gold(both_right) == "B"  # brief wins between two right answers
    right_wordy = {"question": "which is larger: 10 or 90?", "answer_a": "it is 90", "answer_b": "10"}
    assert pj.gold(right_wordy) == "A"  # right beats brief
    assert pj.gold(pj.swap(right_wordy)) == "B" and pj.unswap("B") == "A" and pj.unswap(None) is None


def test_final_segment_takes_last_answer_marker():
    assert final_segment("a answer: x\nmore") == "x"
    assert final_segment("thinking... Answer: 12. answer: 13") == "13"
    assert final_segment("  plain\n") == "plain"


@pytest.mark.parametrize("name", TASKS)
def test_generated_rows_pass_validation(name):
    for row in make_rows(TASKS[name], "test", 20, seed=0):
        assert validate_row(row) == row


@pytest.mark.parametrize("row, message", [
    ({"id": "1", "task": "last_letter"}, "missing field 'words'"),
    ({"id": "1", "task": "last_letter", "words": "apple"}, "field 'words' must be list"),
    ({"id": "1", "task": "last_letter", "words": []}, "field 'words' is empty"),
    ({"id": "1", "task": "last_letter", "words": ["ok", 3]}, "field 'words'[1] must be str"),
    ({"id": "1", "task": "coin_flip", "names": ["a"], "flips": [True, False]}, "same length"),
    ({"id": "1", "task": "coin_flip", "names": ["a"], "flips": ["yes"]}, "field 'flips'[0] must be bool"),
    ({"id": "1", "task": "arithmetic", "expression": "two plus two"}, "field 'expression'"),
    ({"id": "1", "task": "opinion_qa", "question": "  ", "opinion": "x"}, "field 'question' is empty"),
    ({"id": "1", "task": "pair_judge", "question": "q", "answer_a": "a"}, "missing field 'answer_b'"),
    ({"id": "", "task": "arithmetic", "expression": "1+2"}, "field 'id'"),
    ({"id": "1", "task": "nope"}, "field 'task'"),
])
def test_bad_rows_name_the_field(row, message):
    with pytest.raises(RowError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_row(row)


def test_read_jsonl_reports_bad_lines_and_keeps_good_ones(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = {"id": "a", "task": "arithmetic", "expression": "1+2", "label": "3"}
    path.write_bytes(b"\n".join([
        json.dumps(good).encode(),
        b"{not json",
        b'{"id": "b", "task": "arithmetic"}',
        b'{"id": "c", "task": "arithmetic", "expression": "\xff\xfe"}',
        b"[1, 2]",
        b"",
        json.dumps({**good, "id": "d"}).encode(),
    ]))
    results = list(read_jsonl(path, validate_row))
    ok = [row["id"] for _, row, err in results if row]
    errors = {line: err for line, row, err in results if err}
    assert ok == ["a", "d"]
    assert "invalid JSON" in errors[2] and f"{path}:2" in errors[2]
    assert "missing field 'expression'" in errors[3]
    assert "invalid UTF-8" in errors[4]
    assert "expected a JSON object" in errors[5]


def test_draw_rejects_unknown_split():
    with pytest.raises(AssertionError, match="split must be one of"):
        draw(TASKS["arithmetic"], random.Random(0), "validation")
