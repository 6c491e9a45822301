"""Helpers shared by every task module: rows, splits, answer extraction, JSONL reading.

A row is a dict: {"id": str, "task": str, <task fields>..., "label": optional gold answer}.
Gold labels exist for evaluation only; nothing on the distillation path reads them.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

SPLITS = ("train", "unlabelled", "test")  # train = the toy model's pretraining corpus
_SPLIT_CUTS = {"train": (0, 60), "unlabelled": (60, 80), "test": (80, 100)}

ANSWER_MARKER = re.compile(r"answer\s*:", re.IGNORECASE)


class RowError(ValueError):
    """A bad input row; the message names the field that was wrong."""


@dataclass
class Solution:
    """What an ideal run of each System 2 method writes for one input (used to build the toy corpus)."""

    answer: str
    reasoning: str = ""  # step-by-step text before "answer:"
    rephrase: str = ""  # RaR: the question restated
    rewrite: str = ""  # S2A: the input without opinions
    criteria: dict[str, str] = field(default_factory=dict)  # BSM: criterion -> solve text ending "winner X"


def split_of(task: str, fields: dict[str, Any]) -> str:
    """Which split an input belongs to, by a hash of its content: splits can never share an input."""
    key = json.dumps({"task": task, **fields}, sort_keys=True)
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in _SPLIT_CUTS.items() if lo <= bucket < hi)


def draw(task_module: Any, rng: random.Random, split: str) -> dict[str, Any]:
    """Sample the task's inputs until one falls in `split` (rejection sampling keeps splits disjoint)."""
    assert split in SPLITS, f"split must be one of {SPLITS}, got {split!r}"
    for _ in range(10_000):
        fields = task_module.sample(rng, split)
        if split_of(task_module.NAME, fields) == split:
            return fields
    raise RuntimeError(f"task {task_module.NAME}: no input found for split {split!r}")


def make_rows(task_module: Any, split: str, num: int, seed: int) -> list[dict[str, Any]]:
    """`num` distinct labelled rows of one split, deterministic from `seed`."""
    rng = random.Random(f"{task_module.NAME}:{split}:{seed}")
    rows, seen = [], set()
    while len(rows) < num:
        fields = draw(task_module, rng, split)
        key = json.dumps(fields, sort_keys=True)
        if key in seen and len(seen) < 50 * num:
            continue
        seen.add(key)
        rows.append({"id": f"{task_module.NAME}-{split}-{seed}-{len(rows)}", "task": task_module.NAME,
                     **fields, "label": task_module.gold(fields)})
    return rows


def final_segment(text: str) -> str:
    """The part of a model output that holds the final answer: after the last "answer:", else all of it."""
    parts = ANSWER_MARKER.split(text)
    tail = parts[-1] if len(parts) > 1 else text
    lines = [line.strip() for line in tail.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def require(row: dict[str, Any], name: str, kind: type | tuple[type, ...], *, nonempty: bool = True) -> Any:
    """Fetch a field from an input row, with an error that names the field when it is missing or wrong."""
    if name not in row or row[name] is None:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        raise RowError(f"field {name!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    if nonempty and (value == "" or value == [] or (isinstance(value, str) and not value.strip())):
        raise RowError(f"field {name!r} is empty")
    return value


def require_list(row: dict[str, Any], name: str, item: type) -> list:
    values = require(row, name, list)
    for i, value in enumerate(values):
        if not isinstance(value, item) or (item is not bool and isinstance(value, bool)):
            raise RowError(f"field {name!r}[{i}] must be {item.__name__}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise RowError(f"field {name!r}[{i}] is empty")
    return values


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def read_jsonl(path: str | Path, validate: Callable[[dict], dict]) -> Iterator[tuple[int, dict | None, str | None]]:
    """Yield (line number, clean row or None, error or None) for each non-blank line of a JSONL file.

    Bad lines (invalid UTF-8, invalid JSON, a row that fails `validate`) come back as errors naming the line,
    so a caller can write them to an errors file and carry on with the rest.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                if not isinstance(row, dict):
                    raise RowError(f"expected a JSON object, got {type(row).__name__}")
                yield number, validate(row), None
            except UnicodeDecodeError as e:
                yield number, None, f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start})"
            except json.JSONDecodeError as e:
                yield number, None, f"{path}:{number}: invalid JSON ({e.msg} at column {e.colno})"
            except RowError as e:
                yield number, None, f"{path}:{number}: {e}"
