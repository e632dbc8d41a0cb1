"""Training step-time ratios, each measured side by side in one run by the existing
scripts (benchmarks/slimming_step_time.py, benchmarks/dce_step_time.py: interleaved
rounds on the same batches, ratio of the fastest rounds' step times), run as child processes so
each starts from a fresh TensorFlow runtime; their printed figures are parsed here.
"""
import re
import subprocess

from benchmarks.common import child_env, module_command, stamp
from benchmarks.dce_step_time import GOALS as DCE_GOALS
from benchmarks.suite_tables import goal, goals_table, table


def _run(script, name, budget, log):
    cmd = module_command(script, "--model", name, "--steps", str(budget.step_time_steps),
                         "--rounds", str(budget.step_time_rounds))
    command = "python " + " ".join(cmd[1:])
    log(f"ratios: {command}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
    if out.returncode:
        raise RuntimeError(f"{script}.py failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout, command


def slimming_ratio(name, budget, log):
    stdout, command = _run("slimming_step_time", name, budget, log)
    m = re.search(r"plain BN ([\d.]+) ms/step, SlimBN ([\d.]+) ms/step, ratio ([\d.]+)",
                  stdout)
    if not m:
        raise RuntimeError(f"unexpected slimming_step_time.py output:\n{stdout}")
    plain, slim, ratio = map(float, m.groups())
    return {"command": command, "rows": [["plain BN", plain, 1.0], ["SlimBN", slim, ratio]],
            "goals": [goal("SlimBN step time / plain step time", ratio, "<=", 1.03, name)]}


def dce_ratios(name, budget, log):
    stdout, command = _run("dce_step_time", name, budget, log)
    rows = [[m.group(1), float(m.group(2)), float(m.group(3))] for m in re.finditer(
        r"^\| (plain|gated [^|]+?) \| ([\d.]+) \| ([\d.]+) \|", stdout, re.MULTILINE)]
    if not rows:
        raise RuntimeError(f"unexpected dce_step_time.py output:\n{stdout}")
    goals = [goal(f"DCE {row} step time / plain step time", ratio, "<=", DCE_GOALS[row], name)
             for row, _, ratio in rows if row in DCE_GOALS]
    return {"command": command, "rows": rows, "goals": goals}


def run(ctx, name, log):
    b = ctx.budget
    parts = {"slimming": slimming_ratio(name, b, log), "dce": dce_ratios(name, b, log)}
    goals = parts["slimming"]["goals"] + parts["dce"]["goals"]
    lines = [f"### Training step time ratios, {name} ({b.label} run)", "", stamp(), ""]
    for part in parts.values():
        lines += [f"`{part['command']}` ({b.step_time_rounds} interleaved rounds of "
                  f"{b.step_time_steps} steps, batch 128, random data):", "",
                  table(["model", "ms/step (fastest round)", "/ plain"],
                        [[r, f"{ms:.1f}", f"{ratio:.3f}"] for r, ms, ratio in part["rows"]]),
                  ""]
    if b.label == "QUICK":
        lines += [f"QUICK: {b.step_time_rounds} rounds of {b.step_time_steps} steps are "
                  "too few to trust on a shared machine (noise of tens of percent); the "
                  "full run uses 5 rounds of 30.", ""]
    lines += [goals_table(goals), ""]
    return {**parts, "goals": goals, "markdown": "\n".join(lines)}
