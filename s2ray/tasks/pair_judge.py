"""Pairwise judging of two candidate answers (the paper's Branch-Solve-Merge task, as an LLM judge).

"judge. q: which is larger: 47 or 82? A: 82 B: it is 47" -> "A". A correct answer beats a wrong one; between two
correct answers the brief one wins. The toy corpus's direct verdicts come from a judge biased to position A;
BSM branches into criteria (correct, brief), solves each, and merges the verdicts.
"""

from __future__ import annotations

import random
import re
from typing import Any

from s2ray.tasks import last_letter
from s2ray.tasks.common import Solution, final_segment, require

NAME = "pair_judge"
POSITION_BIAS = 0.7  # share of direct corpus verdicts that say "A" when B is better


def _truth(question_text: str) -> str:
    if question_text.startswith("last letters:"):
        return "".join(w[-1] for w in question_text.split(":", 1)[1].split())
    return str(max(int(n) for n in re.findall(r"\d+", question_text)))


def _core(answer: str) -> str:
    return answer.removeprefix("it is ").strip()


def sample(rng: random.Random, split: str) -> dict[str, Any]:
    if rng.random() < 0.5:
        a, b = rng.sample(range(10, 100), 2)
        q, wrong = f"which is larger: {a} or {b}?", str(min(a, b))
    else:
        q = f"last letters: {rng.choice(last_letter.WORDS)} {rng.choice(last_letter.WORDS)}"
        wrong = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2))
        wrong = wrong if wrong != _truth(q) else wrong[::-1] + "x"
    truth = _truth(q)
    if rng.random() < 0.6:  # one right, one wrong, either may be wordy
        better, worse = truth, wrong
        better, worse = [f"it is {x}" if rng.random() < 0.4 else x for x in (better, worse)]
    else:  # both right: the brief one is better
        better, worse = truth, f"it is {truth}"
    first, second = (better, worse) if rng.random() < 0.5 else (worse, better)
    return {"question": q, "answer_a": first, "answer_b": second}


def _verdicts(fields: dict[str, Any]) -> dict[str, str]:
    truth, a, b = _truth(fields["question"]), fields["answer_a"], fields["answer_b"]
    right = {"A": _core(a) == truth, "B": _core(b) == truth}
    bare = {"A": not a.startswith("it is "), "B": not b.startswith("it is ")}
    pick = lambda flags: "tie" if flags["A"] == flags["B"] else ("A" if flags["A"] else "B")  # noqa: E731
    return {
        "correct": f"truth {truth}. A {_core(a)} {'right' if right['A'] else 'wrong'}. "
                   f"B {_core(b)} {'right' if right['B'] else 'wrong'}. winner {pick(right)}",
        "brief": f"A {'bare' if bare['A'] else 'wordy'}. B {'bare' if bare['B'] else 'wordy'}. winner {pick(bare)}",
    }


def gold(fields: dict[str, Any]) -> str:
    winners = [text.rsplit(" ", 1)[1] for text in _verdicts(fields).values()]
    return next((w for w in winners if w != "tie"), "A")


def validate(row: dict[str, Any]) -> dict[str, Any]:
    return {name: require(row, name, str).strip() for name in ("question", "answer_a", "answer_b")}


def question(fields: dict[str, Any], style: str) -> str:
    if style == "toy":
        return f"judge. q: {fields['question']} A: {fields['answer_a']} B: {fields['answer_b']}"
    return ("Which response answers the question better?\n"
            f"Question: {fields['question']}\nResponse A: {fields['answer_a']}\nResponse B: {fields['answer_b']}\n"
            "Reply with A or B.")


def swap(fields: dict[str, Any]) -> dict[str, Any]:
    """The same judging input with the two responses in the other order (for the order-swap filter)."""
    return {**fields, "answer_a": fields["answer_b"], "answer_b": fields["answer_a"]}


def unswap(verdict: str | None) -> str | None:
    """Map a verdict on the swapped input back to the original order."""
    return {"A": "B", "B": "A"}.get(verdict) if verdict else None


def extract(text: str) -> str | None:
    match = re.search(r"\b([AB])\b", final_segment(text).replace("Response ", ""))
    return match.group(1) if match else None


def score(prediction: str | None, label: str) -> bool:
    return prediction is not None and prediction == str(label).strip().upper()


def solution(fields: dict[str, Any]) -> Solution:
    return Solution(answer=gold(fields), criteria=_verdicts(fields))


def direct_demo(fields: dict[str, Any], rng: random.Random) -> str | None:
    """Direct verdicts come from a judge biased to the first position."""
    verdict = gold(fields)
    return "A" if verdict == "B" and rng.random() < POSITION_BIAS else verdict
