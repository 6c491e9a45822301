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


def markdown(report: dict[str, Any]) -> str:
    """report.md: per task, each system's accuracy and cost, with the winner in bold and the token saving."""
    systems = sorted({s for per in report["tasks"].values() for s in per}, key=_rank)
    lines = ["# s2ray report", "", f"Profile `{report.get('profile', '?')}`; accuracy on held-out rows (greedy), "
             "mean generated tokens per answer (all calls of a program). Best accuracy per task in bold.", "",
             "| task | " + " | ".join(f"{s} acc | {s} tokens" for s in systems) + " |",
             "|---|" + "---:|---:|" * len(systems)]
    for task, per in report["tasks"].items():
        best = max(v["accuracy"] for v in per.values())
        cells = []
        for s in systems:
            if s not in per:
                cells += ["-", "-"]
                continue
            acc = f"{per[s]['accuracy'] * 100:.1f}%"
            cells += [f"**{acc}**" if per[s]["accuracy"] == best else acc, f"{per[s]['mean_generated_tokens']:.1f}"]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("")
    for task, per in report["tasks"].items():
        if "distilled" in per and "system2" in per:
            d, s2, s1 = per["distilled"], per["system2"], per["system1"]
            saving = s2["mean_generated_tokens"] / max(d["mean_generated_tokens"], 1e-9)
            lines.append(f"- **{task}**: distilled System 1 {d['accuracy'] * 100:.1f}% vs System 2 "
                         f"{s2['accuracy'] * 100:.1f}% ({s2['method']}) and System 1 {s1['accuracy'] * 100:.1f}%, "
                         f"with {saving:.0f}x fewer generated tokens than System 2.")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> Path:
    """Accuracy vs mean generated tokens (log scale), one panel per task, one marker per system."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    markers = {"system1": ("o", "tab:gray"), "system2": ("s", "tab:blue"), "distilled": ("*", "tab:red"),
               "router": ("D", "tab:green")}
    for ax, task in zip(axes[0], tasks):
        for system, v in report["tasks"][task].items():
            marker, color = markers.get(system, ("x", "black"))
            ax.scatter(v["mean_generated_tokens"], v["accuracy"] * 100, marker=marker, color=color, s=90,
                       label=system)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(-5, 105)
        ax.set_title(task)
        ax.set_xlabel("mean generated tokens")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    """report.json (stable schema), report.md and plot.png in the run folder."""
    path = run_dir / "report.json"
    path.write_text(json.dumps(report, indent=2))
    (run_dir / "report.md").write_text(markdown(report))
    plot(report, run_dir / "plot.png")
    return path
