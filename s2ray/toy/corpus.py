"""The toy model's pretraining corpus: every taught method's step formats, and weak direct answers.

Each item is a (user message, assistant reply) pair drawn from the *train* split of a task (disjoint by
construction from the unlabelled and test splits). System 2 formats are taught with correct steps for all input
sizes; direct (System 1) answers carry each task's natural weakness (short inputs only, sycophancy, position bias).
"""

from __future__ import annotations

import random
from typing import Iterator

from s2ray.methods import METHODS
from s2ray.tasks import TASKS, coin_flip, last_letter
from s2ray.tasks.common import draw

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
USER_PREFIX, ASSISTANT_PREFIX = "Q: ", "\nA: "  # the toy chat format: "<s>Q: {user}\nA: {reply}</s>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '" + USER_PREFIX + "' + m['content'] + '\\nA: ' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}"
    "{% else %}{{ m['content'] + '\\n' }}{% endif %}{% endfor %}"
)
CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"
VOCAB = [PAD, BOS, EOS, UNK, *CHARS]
# Whole words of the toy world that become single tokens (everything else stays character by character), as in a
# real LLM's vocabulary: copying a word is then one token, and a word's last letter is knowledge, not sight.
FORMAT_WORDS = ("and answer bare bet branch brief by coin compute correct criteria flip flips friend heads is it join "
                "keep keeps larger last letters merge my no of opinions or rephrase rephrased respond rewrite right "
                "says solve step surely the think through tie track truth turns verdicts which winner without words "
                "wordy wrong yes").split()
WORD_TOKENS = sorted(set(FORMAT_WORDS) | set(last_letter.WORDS) | set(coin_flip.NAMES))


def prompt_text(user: str) -> str:
    """The toy chat format of one user message, up to where the reply starts (bos token excluded)."""
    return f"{USER_PREFIX}{user}{ASSISTANT_PREFIX}"


def examples(teach: dict[str, list[str]], seed: int | str, direct: bool = True) -> Iterator[tuple[str, str]]:
    """An endless, seeded stream of (user, reply) pairs over the taught tasks and methods.

    `direct=False` leaves out the (deliberately weak) direct answers: distillation replays only System 2 formats,
    so the corpus's System 1 habits do not pull against the distilled answers.
    """
    rng = random.Random(f"corpus:{seed}")
    names = sorted(teach)
    while True:
        task = TASKS[rng.choice(names)]
        fields = draw(task, rng, "train")
        demos = METHODS["direct"].demonstrations(task, fields, rng)  # drawn either way: same stream of inputs
        if direct:
            yield from demos
        method = METHODS[rng.choice(teach[task.NAME])]
        yield from method.demonstrations(task, fields, rng)
