"""Reports: per-row eval records -> report.json schema, and a table a person reads at a glance.

report.json: {"tasks": {"<task>": {"<system>": {"accuracy": 0..1, "mean_generated_tokens": float, "n": int,
"method": str}}}, ...}; systems are system1, system2 (later distilled, router). Keep this schema stable.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

SYSTEM_ORDER = ("system1", "system2", "distilled", "router")


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per task and system: accuracy, mean generated tokens (all calls of a program), count, method."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["system"])].append(r)
    tasks: dict[str, dict[str, Any]] = {}
    for (task, system), rows in sorted(groups.items()):
        n = len(rows)
        tasks.setdefault(task, {})[system] = {
            "accuracy": round(sum(bool(r["correct"]) for r in rows) / n, 4),
            "mean_generated_tokens": round(sum(r["generated_tokens"] for r in rows) / n, 2),
            "n": n,
            "method": rows[0]["method"],
        }
    return {"tasks": {t: dict(sorted(s.items(), key=lambda kv: _rank(kv[0]))) for t, s in tasks.items()}}


def _rank(system: str) -> int:
    return SYSTEM_ORDER.index(system) if system in SYSTEM_ORDER else len(SYSTEM_ORDER)


def table(report: dict[str, Any]) -> str:
    """Accuracy and mean generated tokens per task (rows) and system (columns)."""
    systems = sorted({s for per in report["tasks"].values() for s in per}, key=_rank)
    head = f"{'task':<13}" + "".join(f"{s + ' acc':>15}{'tokens':>9}" for s in systems)
    lines = [head, "-" * len(head)]
    for task, per in report["tasks"].items():
        cells = "".join(f"{per[s]['accuracy'] * 100:>14.1f}%{per[s]['mean_generated_tokens']:>9.1f}"
                        if s in per else f"{'-':>15}{'-':>9}" for s in systems)
        lines.append(f"{task:<13}{cells}")
    methods = ", ".join(f"{t}: {per['system2']['method']}" for t, per in report["tasks"].items() if "system2" in per)
    return "\n".join(lines + [f"(system2 methods — {methods})" if methods else ""])


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    path = run_dir / "report.json"
    path.write_text(json.dumps(report, indent=2))
    return path
