"""The router's decision: answer with System 1 unless its cheap samples disagree or it is unsure.

k System 1 samples are drawn (one engine call, n=k). Their answers are voted on; the router escalates to System 2
when the majority answer's share is below `min_agreement` (abstentions count against it), when the majority
samples' mean per-token log-probability is below `min_mean_logprob` (if set), or when their least likely token's
log-probability is below `min_token_logprob` (if set: one unsure letter of a 5-letter answer shows there, where the
mean dilutes it). With one greedy sample, the log-probabilities are the only signal. Pure logic, unit-tested.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Decision:
    answer: str | None  # the majority System 1 answer (None: every sample abstained)
    index: int | None  # the first sample that gave it (its text is what the router returns)
    agreement: float  # share of the k samples that gave the majority answer
    mean_logprob: float | None  # mean per-token log-probability of those samples (None: not measured)
    lowest_logprob: float | None  # the least likely generated token of those samples (None: not measured)
    escalate: bool
    reason: str


def decide(answers: list[str | None], logprobs: list[float | None], tokens: list[int], min_agreement: float,
           min_mean_logprob: float | None = None, lowest: list[float | None] | None = None,
           min_token_logprob: float | None = None) -> Decision:
    """`logprobs[i]`: sample i's cumulative log-probability; `lowest[i]`: its least likely token's (or None)."""
    lowest = lowest or [None] * len(answers)
    assert answers and len(answers) == len(logprobs) == len(tokens) == len(lowest), "one of each per sample"
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return Decision(None, None, 0.0, None, None, True, "every System 1 sample abstained")
    # ties go to the answer seen first, so the decision is deterministic given the samples
    answer = max(votes, key=lambda a: (votes[a], -answers.index(a)))
    agreement = votes[answer] / len(answers)
    picked = [i for i, a in enumerate(answers) if a == answer]
    measured = [i for i in picked if logprobs[i] is not None and tokens[i] > 0]
    mean_logprob = (sum(logprobs[i] for i in measured) / sum(tokens[i] for i in measured)) if measured else None
    least = min((lowest[i] for i in picked if lowest[i] is not None), default=None)
    decision = Decision(answer, picked[0], agreement, mean_logprob, least, False, "System 1 is sure")
    if agreement < min_agreement:
        return replace(decision, escalate=True, reason=f"agreement {agreement:.2f} < {min_agreement}")
    if min_mean_logprob is not None and mean_logprob is not None and mean_logprob < min_mean_logprob:
        return replace(decision, escalate=True, reason=f"mean log-probability {mean_logprob:.3f} < {min_mean_logprob}")
    if min_token_logprob is not None and least is not None and least < min_token_logprob:
        return replace(decision, escalate=True, reason=f"a token's log-probability {least:.3f} < {min_token_logprob}")
    return decision
