"""Multi-step arithmetic (the paper's Chain-of-Thought task on GSM8k; the paper found it does not distil).

"compute: 7+5-3+8" -> "17". The toy corpus has direct answers only for 2 terms; step-by-step answers for 2-5.
"""

from __future__ import annotations

import random
import re
from typing import Any

from s2ray.tasks.common import RowError, Solution, final_segment, require

NAME = "arithmetic"
MIN_TERMS, MAX_TERMS, MAX_DIRECT_TERMS = 2, 5, 2
_EXPRESSION = re.compile(r"\d+([+-]\d+)+")


def sample(rng: random.Random, split: str) -> dict[str, Any]:
    total = rng.randint(1, 9)
    expression = str(total)
    for _ in range(rng.randint(MIN_TERMS, MAX_TERMS) - 1):
        term = rng.randint(1, 9)
        if total >= term and rng.random() < 0.4:  # keep every partial result non-negative
            expression, total = f"{expression}-{term}", total - term
        else:
            expression, total = f"{expression}+{term}", total + term
    return {"expression": expression}


def _partials(expression: str) -> list[tuple[int, str, int, int]]:
    """(running total, op, term, new total) for each step of a left-to-right evaluation."""
    tokens = re.findall(r"[+-]|\d+", expression)
    total, steps = int(tokens[0]), []
    for op, term in zip(tokens[1::2], tokens[2::2]):
        new = total + int(term) if op == "+" else total - int(term)
        steps.append((total, op, int(term), new))
        total = new
    return steps


def gold(fields: dict[str, Any]) -> str:
    return str(_partials(fields["expression"])[-1][3])


def validate(row: dict[str, Any]) -> dict[str, Any]:
    expression = require(row, "expression", str).replace(" ", "")
    if not _EXPRESSION.fullmatch(expression):
        raise RowError(f"field 'expression' must look like '7+5-3', got {expression[:40]!r}")
    return {"expression": expression}


def question(fields: dict[str, Any], style: str) -> str:
    if style == "toy":
        return f"compute: {fields['expression']}"
    return f"What is {fields['expression']}? Work left to right."


def extract(text: str) -> str | None:
    match = re.search(r"-?\d+", final_segment(text).replace(",", ""))
    return match.group(0) if match else None


def score(prediction: str | None, label: str) -> bool:
    return prediction is not None and prediction == str(label).strip()


def solution(fields: dict[str, Any]) -> Solution:
    steps = [f"{a}{op}{b}={c}" for a, op, b, c in _partials(fields["expression"])]
    return Solution(answer=gold(fields), reasoning=", ".join(steps) + ".")


def direct_demo(fields: dict[str, Any], rng: random.Random) -> str | None:
    """Direct answers appear in the corpus only for one operation: longer sums need steps the model never sees."""
    return gold(fields) if len(_partials(fields["expression"])) <= MAX_DIRECT_TERMS - 1 else None
