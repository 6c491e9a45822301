"""Tasks: one module each, same shape. A new task is one file plus one line in TASKS.

Each module defines: NAME; sample(rng, split) -> fields; gold(fields) -> label; validate(row) -> fields;
question(fields, style) -> System 1 prompt text; extract(text) -> answer or None (abstain); score(pred, label);
and for the toy corpus solution(fields) -> Solution and direct_demo(fields, rng) -> biased direct answer or None.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from s2ray.tasks import arithmetic, coin_flip, last_letter, opinion_qa, pair_judge
from s2ray.tasks.common import RowError, make_rows, read_jsonl

TASKS: dict[str, ModuleType] = {m.NAME: m for m in (last_letter, coin_flip, opinion_qa, pair_judge, arithmetic)}


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def validate_row(row: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """A clean row {id, task, <fields>, label?} from a user's row; RowError names the field that was wrong."""
    name = row.get("task", task)
    if not isinstance(name, str) or name not in TASKS:
        raise RowError(f"field 'task' must be one of {', '.join(TASKS)}, got {name!r}")
    row_id = row.get("id")
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or str(row_id).strip() == "":
        raise RowError(f"field 'id' must be a non-empty string or integer, got {row_id!r}")
    clean = {"id": str(row_id), "task": name, **TASKS[name].validate(row)}
    if row.get("label") is not None:
        clean["label"] = str(row["label"])
    return clean


__all__ = ["TASKS", "RowError", "get_task", "make_rows", "read_jsonl", "validate_row"]
