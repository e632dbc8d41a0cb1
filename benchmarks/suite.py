"""Results and performance tables of keras-slim, from one command (issue 8).

    python -m benchmarks.suite             # full: ≤ 2 h on 2 quiet cores -> results/suite.md
    python -m benchmarks.suite --quick     # ≤ 15 min, labelled QUICK -> results/suite_quick.md
    python -m benchmarks.suite --only rows --models vgg_small      # rerun a part
    python -m benchmarks.suite --dataset cifar10   # online: tfds CIFAR-10 (or svhn_cropped)

Parts (--only): rows (per model: baseline, Network Slimming t = 50/70%, DCE p = 0.5/0.3
with CUCB and random policy, scratch, uniform width, tfmot magnitude pruning — accuracy,
params, MACs, int8 size, LiteRT latency, train time; and the deployment ratios), analysis
(Network Slimming §5: γ distribution vs λ, accuracy vs pruned share t; DCE accuracy vs
active fraction p; on --analysis_model), ratios (training step time of SlimBN and of DCE
at p = 1 / 0.5 / 0.3 against the plain model). Full and quick run the same code with the
sizes in benchmarks/suite_budget.py.

The suite runs on Keras 3; the tfmot row runs in a TF_USE_LEGACY_KERAS=1 child process
(benchmarks/suite_tfmot.py). Each part's figures are kept in <out>.json, so a part rerun
with --only replaces that part and the markdown is rebuilt from all parts, each table
carrying its own date, machine, versions and command.
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import suite_analysis, suite_ratios, suite_rows  # noqa: E402
from benchmarks.common import RESULTS, command, log, machine, timed, versions  # noqa: E402
from benchmarks.suite_budget import DATASET, FULL, QUICK, Context  # noqa: E402
from benchmarks.suite_plots import analysis_png  # noqa: E402
from benchmarks.suite_tables import goals_table, table  # noqa: E402
from keras_slim.zoo import data  # noqa: E402

PARTS = ("rows", "analysis", "ratios")


def _parse():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer epochs, less data: proves the pipeline, not the numbers")
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    p.add_argument("--models", default="vgg_small,resnet20",
                   help="models of the rows and ratios parts")
    p.add_argument("--analysis_model", default="vgg_small")
    p.add_argument("--dataset", default=DATASET, choices=data.SUPPORTED,
                   help="tfds datasets other than fashion_mnist need a download once")
    p.add_argument("--out", default=None,
                   help="markdown output (default results/suite.md, or suite_quick.md)")
    p.add_argument("--workdir", default=None, help="keep the .tflite files here")
    args = p.parse_args()
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        p.error(f"--only: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    stem = "suite" if args.dataset == DATASET else f"suite_{args.dataset}"
    args.out = args.out or os.path.join(RESULTS, f"{stem}_quick.md" if args.quick
                                        else f"{stem}.md")
    return args


def _load(path, label):
    if os.path.exists(path):
        with open(path) as f:
            store = json.load(f)
        if store.get("label") == label:
            return store
    return {"label": label, "parts": {}}


def _jobs(args):
    """(part key, module, model name) in run order."""
    jobs = []
    if "rows" in args.only:
        jobs += [(f"rows/{m}", suite_rows, m) for m in args.models]
    if "analysis" in args.only:
        jobs.append((f"analysis/{args.analysis_model}", suite_analysis, args.analysis_model))
    if "ratios" in args.only:
        jobs += [(f"ratios/{m}", suite_ratios, m) for m in args.models]
    return jobs


def _ordered(parts):
    """Part keys by kind (rows, analysis, ratios), then in the order they were first run."""
    position = {key: i for i, key in enumerate(parts)}

    def order(key):
        kind = key.split("/")[0]
        return (PARTS.index(kind) if kind in PARTS else len(PARTS), position[key])
    return sorted(parts, key=order)


def _markdown(store, budget, out, invocation):
    parts = store["parts"]
    label = budget.label
    title = ("# keras-slim results suite — QUICK run (fewer epochs, less data: proves the "
             "pipeline, not the numbers)" if label == "QUICK"
             else "# keras-slim results suite — full run")
    if budget.dataset != DATASET:
        title += f", {budget.dataset}"
    goals = [g for key in _ordered(parts) for g in parts[key].get("goals", [])]
    lines = [title, "", f"Generated by `{invocation['command']}` on {invocation['date']}; "
             f"{invocation['machine']}; {invocation['versions']}. Every figure below is "
             "printed by the scripts in benchmarks/ (suite.py and the suite_*.py modules); "
             "each table names the run that produced it. Raw figures: "
             f"`{os.path.basename(os.path.splitext(out)[0])}.json`.", ""]
    if label == "QUICK":
        lines += ["**QUICK run**: every table has the same rows as the full run, but from "
                  f"{budget.train_examples:,} training images, {budget.epochs} + "
                  f"{budget.finetune_epochs} epochs and {budget.seeds} seed(s): accuracies "
                  "here are far from converged and say nothing about the methods.", ""]
    lines += ["## Goals", "", goals_table(goals) if goals else "(no part run yet)", ""]
    failed = [k for k, v in parts.items() if "error" in v]
    if failed:
        lines += [f"**Parts that FAILED in their last run: {', '.join(failed)}** "
                  "(traceback in the part's section).", ""]
    lines += ["## Results", ""]
    for key in _ordered(parts):
        part = parts[key]
        if "error" in part:
            lines += [f"### {key}: FAILED", "", "```", part["error"][-4000:], "```", ""]
            continue
        lines += [part["markdown"], ""]
        if key.startswith("analysis/") and part.get("png"):
            lines += [f"![{key}]({part['png']})", ""]  # beside the .md
        elif key.startswith("analysis/"):
            lines += ["(no plot: matplotlib is not importable)", ""]
    lines += ["## Wall time per part", "",
              table(["part", "minutes", "finished"],
                    [[k, f"{parts[k]['seconds'] / 60:.1f}", parts[k]["finished"]]
                     for k in _ordered(parts)]), "",
              f"Last invocation: {invocation['minutes']:.1f} min in total for parts "
              f"{', '.join(invocation['jobs'])} (`{invocation['command']}`).", ""]
    return "\n".join(lines)


def main():
    args = _parse()
    budget = dataclasses.replace(QUICK if args.quick else FULL, dataset=args.dataset)
    store_path = os.path.splitext(args.out)[0] + ".json"
    store = _load(store_path, budget.label)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="suite_")
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    jobs = _jobs(args)
    log(f"suite ({budget.label}): parts {', '.join(k for k, _, _ in jobs)}; workdir {workdir}")
    try:
        ctx = Context(budget, workdir)
    except data.DatasetUnavailableError as e:
        sys.exit(f"suite: --dataset={args.dataset} is not available here: {e}")
    invocation = {"command": command(), "machine": machine(), "versions": versions(),
                  "date": time.strftime("%Y-%m-%d %H:%M"), "jobs": [k for k, _, _ in jobs]}
    times = {}
    for key, module, name in jobs:
        with timed(key, times):
            try:
                part = module.run(ctx, name, log)
            except Exception:  # keep going: one failed part must not lose the others
                part = {"error": traceback.format_exc()}
                log(f"{key} FAILED:\n{part['error']}")
        part["seconds"] = times[key]
        part["finished"] = time.strftime("%Y-%m-%d %H:%M")
        if key.startswith("analysis/") and "error" not in part:
            png = os.path.splitext(args.out)[0] + f"_{name}_analysis.png"
            if analysis_png(part, png, f"{name}, {budget.label} run"):
                part["png"] = os.path.basename(png)  # the record stays valid if moved
        store["parts"][key] = part
        with open(store_path, "w") as f:
            json.dump(store, f, indent=1)
        invocation["minutes"] = (time.time() - start) / 60
        with open(args.out, "w") as f:
            f.write(_markdown(store, budget, args.out, invocation))
    log(f"suite done in {(time.time() - start) / 60:.1f} min: {args.out}")
    failed = [k for k, _, _ in jobs if "error" in store["parts"][k]]
    if failed:
        log(f"FAILED parts: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
