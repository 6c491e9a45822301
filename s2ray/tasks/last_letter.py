"""Last-letter concatenation (the paper's Rephrase-and-Respond task).

"last letters: apple river stone" -> "ere". In the toy corpus the model sees direct answers only for 2-word
inputs, so its System 1 answer fails to generalise in length, while step-by-step (RaR) answers cover 2-5 words.
"""

from __future__ import annotations

import random
import re
from typing import Any

from s2ray.tasks.common import RowError, Solution, final_segment, require_list

NAME = "last_letter"
WORDS = (
    "apple river stone cloud maple tiger lemon piano candle forest honey window garden silver rocket "
    "pepper orange violet basket mirror island jacket carpet dragon falcon ginger harbor kettle ladder "
    "meadow needle pillow rabbit saddle tunnel velvet walnut yellow zipper anchor bridge castle desert "
    "engine flower guitar hammer insect jungle knight lizard marble nickel oyster pencil quartz riddle "
    "shadow turtle violin wizard bottle cactus donkey eagle fabric goblin helmet igloo jelly koala "
    "lantern monkey napkin object parrot quiver robin salmon tomato umbrella vessel wagon yogurt zebra "
    "acorn bison cobra daisy ember fig grape hazel ivory judge kiwi lotus mango noble olive plum quilt "
    "raven sugar thorn unity vapor wheat xenon yacht zone baker comet delta frost globe"
).split()
MIN_WORDS, MAX_WORDS, MAX_DIRECT_WORDS = 2, 5, 2


def sample(rng: random.Random, split: str) -> dict[str, Any]:
    return {"words": [rng.choice(WORDS) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]}


def gold(fields: dict[str, Any]) -> str:
    return "".join(word[-1] for word in fields["words"])


def validate(row: dict[str, Any]) -> dict[str, Any]:
    words = require_list(row, "words", str)
    if any(not re.fullmatch(r"[A-Za-z]+", w) for w in words):
        raise RowError("field 'words' must hold single words of letters only")
    return {"words": [w.lower() for w in words]}


def question(fields: dict[str, Any], style: str) -> str:
    words = " ".join(fields["words"])
    if style == "toy":
        return f"last letters: {words}"
    return f'Take the last letter of each word in "{words}" and concatenate them.'


def extract(text: str) -> str | None:
    answer = re.sub(r"[\s\"'.,]", "", final_segment(text)).lower()
    return answer if re.fullmatch(r"[a-z]+", answer) else None


def score(prediction: str | None, label: str) -> bool:
    return prediction is not None and prediction == str(label).strip().lower()


def solution(fields: dict[str, Any]) -> Solution:
    words = fields["words"]
    return Solution(
        answer=gold(fields),
        rephrase=f"join the last letters of {len(words)} words",
        reasoning=", ".join(f"{w} {w[-1]}" for w in words) + ".",
    )


def direct_demo(fields: dict[str, Any], rng: random.Random) -> str | None:
    """Direct answers appear in the corpus only for short inputs: System 1 never learns to count past 2."""
    return gold(fields) if len(fields["words"]) <= MAX_DIRECT_WORDS else None
