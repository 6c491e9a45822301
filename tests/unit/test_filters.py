from s2ray.filters import kept_at, majority, order_swap, usc_choice, usc_prompt


def test_majority_keeps_agreeing_votes():
    vote = majority(["ab", "ab", "ab", "cd"], agreement=0.75)
    assert vote.kept and vote.answer == "ab" and vote.agreement == 0.75 and vote.valid == 4 and vote.total == 4


def test_unparseable_answers_abstain_and_do_not_count():
    vote = majority([None, "ab", None, "ab"], agreement=1.0)
    assert vote.kept and vote.answer == "ab" and vote.valid == 2 and vote.total == 4


def test_too_inconsistent_rows_are_dropped_with_reason():
    vote = majority(["a", "b", "c", "a"], agreement=0.75)
    assert not vote.kept and vote.answer == "a" and "agreement 0.50 < 0.75" in vote.reason


def test_min_valid_votes():
    vote = majority([None, None, None, "x"], agreement=0.5, min_valid=2)
    assert not vote.kept and "only 1 valid votes < 2" in vote.reason


def test_no_valid_answer():
    vote = majority([None, None], agreement=0.5)
    assert vote == vote.__class__(None, 0.0, 0, 2, False, "no valid answer")


def test_ties_break_deterministically_by_first_seen():
    assert majority(["b", "a", "a", "b"], agreement=0.5).answer == "b"
    assert majority(["a", "b", "b", "a"], agreement=0.5).answer == "a"


def test_order_swap_needs_the_same_verdict_in_both_orders():
    assert order_swap(["A", "A", "A"], ["A", "A", "B"], agreement=0.6).kept
    inconsistent = order_swap(["A", "A", "A"], ["B", "B", "B"], agreement=0.6)
    assert not inconsistent.kept and "order-swap inconsistent" in inconsistent.reason
    weak = order_swap(["A", "A", "A"], ["A", "B", None], agreement=0.6)
    assert not weak.kept and "order-swap: agreement" in weak.reason
    assert not order_swap([None], ["A"], agreement=0.5).kept


def test_usc_prompt_and_choice():
    prompt = usc_prompt("q?", ["one", "two"])
    assert "Response 0: one" in prompt and "Response 1: two" in prompt
    assert usc_choice("The most consistent response is Response 1.", 2) == 1
    assert usc_choice("the most consistent response is response 7", 2) is None
    assert usc_choice("no idea", 2) is None


def test_kept_at_other_thresholds():
    votes = ["a", "a", "a", "b", None]
    assert kept_at(votes, 0.75) and not kept_at(votes, 0.8)


def test_order_swap_names_the_order_without_a_valid_verdict():
    vote = order_swap(["A", "A", "A"], [None, None, None], 0.75, 2)
    assert not vote.kept and "swapped order has no valid verdict" in vote.reason
