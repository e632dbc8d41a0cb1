"""The Network Slimming paper's §5 analyses and DCE's accuracy vs active fraction p.

- γ distribution after sparsity training for several λ (histogram counts on common
  bins), from benchmarks' sparsity-trained models (suite_runs.sparsity_model);
- accuracy vs pruned percentage t, before and after a short fine-tune, every t pruned
  from ONE sparsity-trained model (λ of the rows);
- DCE: accuracy vs active fraction p (CUCB, seed 0), same budget as the DCE rows.
"""
import numpy as np

from benchmarks import suite_runs
from benchmarks.common import stamp
from benchmarks.suite_tables import table
from keras_slim import slimming
from keras_slim.core import metrics

GAMMA_EDGES = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, np.inf)


def gamma_distribution(ctx, name, log):
    rows = []
    initial = float(np.median(np.concatenate(list(
        slimming.gamma_scores(ctx.build(name)).values()))))
    for l1 in tuple(ctx.budget.gamma_lambdas) + (ctx.budget.l1,):
        log(f"analysis: γ after sparsity training, λ={l1:g}")
        slim, seconds = suite_runs.sparsity_model(ctx, name, l1, 0)
        gamma = np.concatenate(list(slimming.gamma_scores(slim).values()))
        counts, _ = np.histogram(gamma, bins=np.array(GAMMA_EDGES))
        rows.append({"l1": l1, "counts": counts.tolist(), "initial_median": initial,
                     "share_below_0.01": slimming.sparsity_summary(slim)["overall"]["share"],
                     "median": float(np.median(gamma)),
                     "accuracy": suite_runs.compiled_accuracy(slim, ctx.test),
                     "seconds": seconds})
    return rows


def pruning_curve(ctx, name, log):
    b = ctx.budget
    slim, _ = suite_runs.sparsity_model(ctx, name, b.l1, 0)
    full = metrics.profile(slimming.strip(slim))
    rows = [{"t": 0.0, "before": suite_runs.compiled_accuracy(slim, ctx.test), "after": None,
             "params": full["params"], "macs": full["macs"]}]
    for t in b.t_values:
        log(f"analysis: prune t={t:.0%}, fine-tune {b.t_finetune_epochs} epoch(s)")
        r = suite_runs.prune_and_finetune(ctx, slim, t, b.t_finetune_epochs,
                                          uncompensated=False)
        profile = metrics.profile(r["model"])
        rows.append({"t": t, "before": r["after_rebuild"]["compensated"],
                     "after": r["accuracy"], "params": profile["params"],
                     "macs": profile["macs"]})
    return rows


def fraction_curve(ctx, name, log):
    rows = []
    for p in ctx.budget.p_values:
        log(f"analysis: DCE p={p} (CUCB, seed 0)")
        r = suite_runs.dce(ctx, name, p, "cucb", 0)
        rows.append({"p": p, "after_rebuild": r["after_rebuild"], "accuracy": r["accuracy"],
                     "params": r["params"], "macs": r["macs"]})
    return rows


def _markdown(ctx, name, data):
    b = ctx.budget
    bins = [f"[{lo:g}, {hi:g})" for lo, hi in zip(GAMMA_EDGES[:-1], GAMMA_EDGES[1:])]
    gamma = table(["λ", "test acc % (sparsity model)", "share |γ| < 0.01", "median |γ|"] + bins,
                  [[f"{r['l1']:g}", f"{100 * r['accuracy']:.2f}",
                    f"{r['share_below_0.01']:.1%}", f"{r['median']:.3f}"] + r["counts"]
                   for r in data["gamma"]])
    curve = table(["pruned t", "acc % before FT", "acc % after FT", "params", "MACs"],
                  [[f"{r['t']:.0%}", f"{100 * r['before']:.2f}",
                    "– (unpruned)" if r["after"] is None else f"{100 * r['after']:.2f}",
                    f"{r['params']:,}", f"{r['macs']:,}"] for r in data["t_curve"]])
    best = max(data["p_curve"], key=lambda r: r["accuracy"])
    frac = table(["active fraction p", "acc % after rebuild", "acc % after FT", "params",
                  "MACs"],
                 [[f"{r['p']:g}", f"{100 * r['after_rebuild']:.2f}",
                   f"{100 * r['accuracy']:.2f}",
                   f"{r['params']:,}", f"{r['macs']:,}"] for r in data["p_curve"]])
    peak = 0.7 <= best["p"] <= 0.9
    return "\n".join([
        f"### Network Slimming §5 analyses, {name} ({b.label} run)", "",
        f"#### γ distribution after {b.epochs} epoch(s) of sparsity training (seed 0)", "",
        stamp(), "", gamma, "",
        f"Counts of all BN |γ| per bin ({name} initialises γ = "
        f"{data['gamma'][0]['initial_median']:g}). The paper's λ are 0, 1e-5, 1e-4 "
        f"for 160 epochs; {b.l1:g} is the λ of the slimming rows (short schedules need "
        "a stronger penalty).", "",
        f"#### Accuracy vs pruned share t (one model, λ = {b.l1:g})", "", stamp(), "", curve,
        "", f"Each t: global |γ| prune of the same sparsity-trained model, rebuild with bias "
        f"compensation, then {b.t_finetune_epochs} fine-tune epoch(s).", "",
        f"### DCE: accuracy vs active fraction p, {name} ({b.label} run)", "", stamp(), "",
        frac, "",
        f"DCE training {b.epochs} epoch(s) with p active (CUCB, seed 0), keep the p most "
        f"salient channels, {b.finetune_epochs} fine-tune epoch(s). Best p here: "
        f"{best['p']:g} (the DCE paper reports its peak at 70–90% active channels: "
        f"{'consistent' if peak else 'NOT reproduced in this run'}).", ""])


def run(ctx, name, log):
    data = {"gamma": gamma_distribution(ctx, name, log),
            "t_curve": pruning_curve(ctx, name, log),
            "p_curve": fraction_curve(ctx, name, log)}
    data["markdown"] = _markdown(ctx, name, data)
    return data
