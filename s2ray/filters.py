"""Unsupervised consistency filters: which System 2 outputs become distillation targets (pure, no heavy imports).

- `majority`: self-consistency vote over k sampled answers. Unparseable answers abstain; ties break by the
  answer seen first (deterministic); a row is kept only with >= `min_valid` valid votes and agreement >= tau.
- `order_swap`: for judges, the verdict must survive swapping the two responses (paper: BSM).
- `usc_prompt` / `usc_choice`: universal self-consistency for free-form outputs: an extra LLM call picks the most
  consistent of the k outputs (paper: S2A).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the majority answer (None when no sample gave a valid answer)
    agreement: float  # share of valid votes that agree with `answer` (0 when none are valid)
    valid: int  # samples with a parseable answer
    total: int  # samples drawn
    kept: bool
    reason: str  # "kept" or why the row was dropped


def majority(answers: list[str | None], agreement: float, min_valid: int = 1) -> Vote:
    """Self-consistency vote; the winning answer's share of valid votes must reach `agreement` (tau)."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return Vote(None, 0.0, 0, len(answers), False, "no valid answer")
    counts = Counter(valid)
    top = max(counts.values())
    winner = next(a for a in valid if counts[a] == top)  # tie: the answer sampled first
    share = top / len(valid)
    if len(valid) < min_valid:
        return Vote(winner, share, len(valid), len(answers), False, f"only {len(valid)} valid votes < {min_valid}")
    if share < agreement:
        return Vote(winner, share, len(valid), len(answers), False, f"agreement {share:.2f} < {agreement:.2f}")
    return Vote(winner, share, len(valid), len(answers), True, "kept")


def order_swap(original: list[str | None], swapped_back: list[str | None], agreement: float,
               min_valid: int = 1) -> Vote:
    """Vote on both orders (swapped verdicts already mapped back); keep only if both orders' majorities agree."""
    first, second = majority(original, agreement, min_valid), majority(swapped_back, agreement, min_valid)
    both = majority(original + swapped_back, agreement, min_valid)
    if first.answer is None or second.answer is None:  # an order with no valid verdict at all
        side, vote = ("original", first) if first.answer is None else ("swapped", second)
        return replace(both, kept=False, reason=f"order-swap: the {side} order has no valid verdict ({vote.reason})")
    if first.answer != second.answer:
        return replace(both, kept=False,
                       reason=f"order-swap inconsistent ({first.answer} vs {second.answer} swapped)")
    if not (first.kept and second.kept):
        return replace(both, kept=False, reason=f"order-swap: {first.reason if not first.kept else second.reason}")
    return replace(both, kept=True, reason="kept")


USC_PROMPT = ("I have generated the following responses to the question: {question}\n\n{responses}\n\n"
              "Evaluate these responses. Select the most consistent response based on majority consensus. "
              "Start your answer with \"The most consistent response is Response X\" (without quotes).")


def usc_prompt(question: str, outputs: list[str]) -> str:
    responses = "\n\n".join(f"Response {i}: {text.strip()}" for i, text in enumerate(outputs))
    return USC_PROMPT.format(question=question, responses=responses)


def usc_choice(text: str, num_outputs: int) -> int | None:
    """The response index a USC call picked, or None when it named none in range."""
    match = re.search(r"most consistent response is response\s*(\d+)", text, re.IGNORECASE)
    if not match:
        return None
    index = int(match.group(1))
    return index if 0 <= index < num_outputs else None


def kept_at(votes: list[str | None], tau: float, min_valid: int = 1) -> bool:
    """Whether a row's recorded votes pass at another threshold (for the per-tau report, no re-sampling)."""
    return majority(votes, tau, min_valid).kept
