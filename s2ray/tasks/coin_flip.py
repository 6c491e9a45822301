"""Coin flip (the paper's second Rephrase-and-Respond task).

"coin heads. ann flips, bob keeps, cat flips. heads?" -> "yes". The toy corpus has direct answers only for
1-2 people, so System 1 guesses on longer chains; step-by-step state tracking (RaR) covers 1-6 people.
"""

from __future__ import annotations

import random
from typing import Any

from s2ray.tasks.common import RowError, Solution, final_segment, require_list

NAME = "coin_flip"
NAMES = "ann bob cat dan eve fay gus hal ivy jon kim lea max ned oli pam quin ray sue tom uma val wes zoe".split()
MIN_PEOPLE, MAX_PEOPLE, MAX_DIRECT_PEOPLE = 2, 6, 2


def sample(rng: random.Random, split: str) -> dict[str, Any]:
    count = rng.randint(1 if split == "train" else MIN_PEOPLE, MAX_PEOPLE)
    return {"names": rng.sample(NAMES, count), "flips": [rng.random() < 0.5 for _ in range(count)]}


def gold(fields: dict[str, Any]) -> str:
    return "no" if sum(fields["flips"]) % 2 else "yes"


def validate(row: dict[str, Any]) -> dict[str, Any]:
    names, flips = require_list(row, "names", str), require_list(row, "flips", bool)
    if len(names) != len(flips):
        raise RowError(f"fields 'names' and 'flips' must have the same length, got {len(names)} and {len(flips)}")
    return {"names": [n.strip().lower() for n in names], "flips": flips}


def question(fields: dict[str, Any], style: str) -> str:
    acts = [f"{n} {'flips' if f else 'keeps'}" for n, f in zip(fields["names"], fields["flips"])]
    if style == "toy":
        return f"coin heads. {', '.join(acts)}. heads?"
    said = ". ".join(f"{n.title()} {'flips' if f else 'does not flip'} the coin"
                     for n, f in zip(fields["names"], fields["flips"]))
    return f"A coin is heads up. {said}. Is the coin still heads up? Answer yes or no."


def extract(text: str) -> str | None:
    words = final_segment(text).lower().replace(".", " ").replace(",", " ").split()
    return words[0] if words and words[0] in ("yes", "no") else None


def score(prediction: str | None, label: str) -> bool:
    return prediction is not None and prediction == str(label).strip().lower()


def solution(fields: dict[str, Any]) -> Solution:
    state, steps = "H", []
    for name, flip in zip(fields["names"], fields["flips"]):
        state = ("T" if state == "H" else "H") if flip else state
        steps.append(f"{name} {'flip' if flip else 'keep'} {state}")
    return Solution(
        answer=gold(fields),
        rephrase=f"track heads through {len(fields['names'])} turns",
        reasoning="H. " + ", ".join(steps) + ".",
    )


def direct_demo(fields: dict[str, Any], rng: random.Random) -> str | None:
    """Direct answers appear in the corpus only for 1-2 people: System 1 cannot track longer chains."""
    return gold(fields) if len(fields["names"]) <= MAX_DIRECT_PEOPLE else None
