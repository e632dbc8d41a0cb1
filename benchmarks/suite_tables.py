"""Markdown helpers for the suite: mean ± std, goal verdicts, tables."""
import numpy as np


def mean_std(values):
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    return float(values.mean()), float(values.std()), int(values.size)


def pct(values):
    """'91.23 ± 0.12 (3 seeds)' / '91.23 (1 seed)' from accuracies in [0, 1]."""
    stat = mean_std(values if isinstance(values, (list, tuple)) else [values])
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{100 * mean:.2f} ± {100 * std:.2f} ({n} seeds)" if n > 1 else \
        f"{100 * mean:.2f} (1 seed)"


def goal(name, value, op, target, where=""):
    """A goal verdict: {"goal", "where", "value", "target", "met"}; value None = not run."""
    met = None if value is None else (value <= target if op == "<=" else value >= target)
    return {"goal": name, "where": where, "value": value, "target": f"{op} {target:g}",
            "met": met}


def verdict(g):
    return "not measured" if g["met"] is None else "met" if g["met"] else "**NOT met**"


def _cell(value):
    return str(value).replace("|", "\\|")  # |γ| must not split a column


def table(header, rows):
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goals_table(goals):
    return table(["goal", "where", "measured", "target", "verdict"],
                 [[g["goal"], g["where"], "–" if g["value"] is None else f"{g['value']:.3f}",
                   g["target"], verdict(g)] for g in goals])
