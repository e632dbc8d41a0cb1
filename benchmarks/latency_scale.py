"""Pruning and LiteRT latency at the scale phones run, and latency-target pruning.

    python -m benchmarks.latency_scale [--runs 10] [--rounds 3] [--jobs scale:vgg19,...]
    python -m benchmarks.latency_scale --jobs target:vgg_small,target:MobileNetV2 \
        --out benchmarks/results/latency_targets.md

Rows: keras.applications MobileNetV2, ResNet50, EfficientNetB0 at 224² (random weights:
latency does not depend on them) and the zoo's vgg19 / resnet56 at 32²; plans by the
l1_norm criterion removing 30/50/70% of channels (rounded to 8) and reaching 50% of
MACs; each converted to int8 and float32 and timed in LiteRT at 1 and 2 threads (this
machine has 2 cores) with XNNPACK and with the builtin kernels, interleaved. Predicted
latency: a latency table (int8, XNNPACK, 1 thread) measured by probes, its overhead,
scale and output cost fitted on the unpruned model and half- and quarter-width copies.
Latency targets: the MACs-target plan at 50% of MACs is measured; latency-aware plans
are asked for that measured latency and for half the original's, from the table alone
and with measured feedback (keras_slim.latency.plan_for_measured_latency); every plan's
kept share of the criterion's total importance is reported. Results are rewritten after
every model.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks import common
from keras_slim.compat import keras
from keras_slim.core import metrics
from keras_slim.core.criteria import SCORERS, criterion_plan
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import group_scores
from keras_slim.core.rebuild import rebuild
from keras_slim.export import load_interpreter
from keras_slim.export.benchmark import fill_random_inputs
from keras_slim.latency import build_table, plan_for_measured_latency
from keras_slim.latency.probe import timing_rounds, timing_tflite
from keras_slim.zoo import models

OUT = os.path.join(common.RESULTS, "latency_scale.md")
# the system temp dir: a rerun on this machine reuses the timings, a fresh one measures
CACHE = os.path.join(tempfile.gettempdir(), "keras_slim_latency_scale_table.json")
# 1 and 2 threads: this machine has 2 cores, so 4 threads would time the OS scheduler.
CONFIGS = [(1, True), (2, True), (1, False), (2, False)]  # (threads, xnnpack)


def _model(name):
    if name in ("vgg19", "resnet56"):
        return models.build(name, input_shape=(32, 32, 3))
    if name == "vgg_small":
        return models.build(name, input_shape=(28, 28, 1))
    return getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))


def _timer(content, threads, xnnpack, runs):
    """A function timing `runs` batch-1 invocations: their median in ms."""
    interpreter = load_interpreter(content, num_threads=threads, xnnpack=xnnpack)[0]
    fill_random_inputs(interpreter)
    interpreter.invoke()  # warm-up: XNNPACK packs weights on the first call

    def time_runs():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        return 1000.0 * float(np.median(times))
    return time_runs


def interleaved_ms(contents, configs, runs, rounds, min_seconds=0.0):
    """{(key, config): ms}: every file at every config timed once per round, in turn, so
    load from other jobs hits all alike; the fastest round's median counts. Rounds go on
    until min_seconds have passed (this VM throttles for seconds at a time)."""
    timers = {(key, c): _timer(content, *c, runs) for key, content in contents.items()
              for c in configs}
    best = {k: float("inf") for k in timers}
    for _ in timing_rounds(rounds, min_seconds):
        for k, time_runs in timers.items():
            best[k] = min(best[k], time_runs())
    return best


def _kept_importance(graph, plan):
    per_group = group_scores(graph, SCORERS["l1_norm"](graph, 0), "mean")
    by_name = {g.name: g for g in plan.groups}
    kept = total = 0.0
    for name, values in per_group.items():
        total += values.sum()
        kept += values[by_name[name].keep].sum() if name in by_name else values.sum()
    return kept / total


def _table(graph, args):
    return build_table(graph, cache=args.table_cache, fractions=(0.25, 0.5, 1.0),
                       runs=args.table_runs, rounds=args.rounds,
                       min_seconds=args.min_seconds, verbose=0)


def scale_rows(name, args, lines):
    model = _model(name)
    graph = ChannelGraph(model)
    common.log(f"{name}: latency table")
    table = _table(graph, args)
    common.log(f"{name}: table fit: overhead {table.overhead_ms:.3f} ms, scale "
               f"{table.scale:.3f}, output {table.output_ms:.3f} ms per 1e6 values")
    plans = [("original", None)] + [(f"{int(r * 100)}% ch", criterion_plan(
        graph, "l1_norm", r)) for r in (0.3, 0.5, 0.7)] + [
        ("50% MACs", criterion_plan(graph, "l1_norm", target={"macs": 0.5}))]
    rows, contents = {}, {}
    for label, plan in plans:
        common.log(f"{name}: {label}: rebuild, convert")
        pruned = model if plan is None else rebuild(model, plan, graph=graph)
        prof = metrics.profile(pruned)
        rows[label] = {"macs": prof["macs"], "params": prof["params"],
                       "pred": table.predict_model(ChannelGraph(pruned))}
        for dtype in ("int8", "float32"):
            contents[label, dtype] = timing_tflite(pruned, dtype)
    common.log(f"{name}: timing {len(contents) * len(CONFIGS)} interpreters")
    ms = interleaved_ms(contents, CONFIGS, args.runs, args.rounds, args.min_seconds)
    base = rows["original"]
    one = (1, True)
    for label, _ in plans:
        row = rows[label]
        flops = base["macs"] / row["macs"]
        int8_1t = ms[("original", "int8"), one] / ms[(label, "int8"), one]
        measured = ms[(label, "int8"), one]
        cells = [name, label, f"{row['macs'] / 1e6:.1f}", f"{row['params'] / 1e6:.2f}",
                 f"{flops:.2f}×"]
        cells += [f"{ms[(label, d), c]:.2f}" for d in ("int8", "float32") for c in CONFIGS]
        cells += [f"{int8_1t:.2f}× ({int8_1t / flops:.2f})",
                  f"{row['pred']:.2f} ({100 * (row['pred'] / measured - 1):+.1f}%)"]
        lines.append("| " + " | ".join(cells) + " |")


def _latency_plan(graph, table, target):
    try:
        return criterion_plan(graph, "l1_norm", target=target, latency_table=table), None
    except ValueError as e:  # e.g. below what the floors allow
        return None, str(e)


def target_rows(name, args, lines):
    model = _model(name)
    graph = ChannelGraph(model)
    common.log(f"{name}: latency table")
    table = _table(graph, args)
    one = [(1, True)]
    macs_plan = criterion_plan(graph, "l1_norm", target={"macs": 0.5})
    first = interleaved_ms({"original": timing_tflite(model, "int8"),
                            "macs": timing_tflite(rebuild(model, macs_plan, graph=graph), "int8")},
                           one, args.runs, args.rounds, args.min_seconds)
    original, macs_ms = first["original", one[0]], first["macs", one[0]]
    rows = [("50% MACs", macs_plan, None, None)]
    for label, goal in (("MACs plan's measured ms", macs_ms), ("0.5 × original", 0.5 * original)):
        common.log(f"{name}: target {goal:.3f} ms, table only")
        plan, why = _latency_plan(graph, table, {"latency_ms": goal})
        rows.append((f"{label}, table only", plan, why, goal))
        common.log(f"{name}: target {goal:.3f} ms, measured feedback")
        try:
            # as many rounds as the rows below, so both see the CPU's fastest state
            plan, why = plan_for_measured_latency(model, "l1_norm", goal, table, graph=graph,
                                                  runs=args.table_runs,
                                                  rounds=args.rounds,
                                                  min_seconds=args.min_seconds), None
        except ValueError as e:
            plan, why = None, str(e)
        rows.append((f"{label}, measured feedback", plan, why, goal))
    contents = {i: timing_tflite(rebuild(model, plan, graph=graph), "int8")
                for i, (_, plan, _, _) in enumerate(rows) if plan is not None}
    ms = interleaved_ms(contents, one, args.runs, args.rounds, args.min_seconds)
    for i, (label, plan, why, goal) in enumerate(rows):
        if plan is None:
            lines.append(f"| {name} | {label} | {original:.3f} | – | – | unreachable: "
                         f"{why} | – | – |")
            continue
        measured = ms[i, one[0]]
        landing = f"{goal:.3f} → {measured:.3f} ({100 * (measured / goal - 1):+.1f}%)" \
            if goal else "–"
        steps = plan.meta.get("measured_latency")
        steps = " → ".join(f"{h['measured_ms']:.3f}" for h in steps) if steps else "–"
        lines.append(f"| {name} | {label} | {original:.3f} | {measured:.3f} | "
                     f"{plan.meta['achieved']['macs'] / 1e6:.1f} | {landing} | {steps} | "
                     f"{_kept_importance(graph, plan):.3f} |")


HEAD_SCALE = ("| model | plan | MMACs | M params | FLOPs ↓ | "
              + " | ".join(f"{d} {t}t {'XNN' if x else 'builtin'} ms"
                           for d in ("int8", "f32") for t, x in CONFIGS)
              + " | int8 XNN 1t gain (/FLOPs↓) | predicted int8 XNN 1t ms (vs measured) |")
HEAD_TARGET = ("| model | plan | original int8 ms | measured ms | MMACs | target → measured "
               "| feedback steps, measured ms | kept l1 importance |")


def write(scale, target, args, started, missing):
    text = ["# Latency at realistic scale and latency-target pruning", ""]
    text += common.run_header()
    text += [f"- machine: {common.machine()}", f"- {common.versions()}",
             f"- runtime {time.time() - started:.0f} s; timings: every file at every setting "
             f"timed in turn, {args.rounds} rounds (more until {args.min_seconds:g} s had "
             f"passed) of {args.runs} batch-1 invocations, the fastest round's median (the 2-core CPU may be shared with other jobs)",
             f"- latency table: probes at 25/50/100% widths, median of {args.table_runs} "
             "invocations each; overhead, scale and output cost fitted on the unpruned "
             "model and random half- and quarter-width copies (keras_slim.latency.table)", ""]
    if missing:
        text += [f"**Not measured in this run:** {', '.join(missing)}.", ""]
    text += ["## Channels removed (l1_norm) and 50% of MACs", "", HEAD_SCALE,
             "|" + "---|" * HEAD_SCALE.count(" | ") + "---|"] + scale
    text += ["", "## Latency targets (int8, XNNPACK, 1 thread)", "", HEAD_TARGET,
             "|" + "---|" * HEAD_TARGET.count(" | ") + "---|"] + target
    common.write_text(args.out, "\n".join(text) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="invocations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min_seconds", type=float, default=0.0,
                        help="every timed set gets rounds for at least this long")
    parser.add_argument("--out", default=OUT, help="results file (rewritten per model)")
    parser.add_argument("--table_runs", type=int, default=20)
    parser.add_argument("--budget_min", type=float, default=30.0)
    parser.add_argument("--table_cache", default=CACHE,
                        help="latency table JSON: entries measured before are reused")
    parser.add_argument("--jobs", default="scale:vgg19,scale:resnet56,scale:MobileNetV2,"
                        "target:vgg_small,target:MobileNetV2,scale:ResNet50,target:ResNet50,"
                        "scale:EfficientNetB0", help="kind:model, run in this order")
    args = parser.parse_args()
    started = time.time()
    scale, target = [], []
    jobs = [tuple(job.split(":")) for job in args.jobs.split(",")]
    done = []
    for kind, name in jobs:
        if time.time() - started > args.budget_min * 60:
            break  # no new model after the budget: the rest is listed as not measured
        (scale_rows if kind == "scale" else target_rows)(
            name, args, scale if kind == "scale" else target)
        done.append((kind, name))
        missing = [f"{k} {n}" for k, n in jobs if (k, n) not in done]
        write(scale, target, args, started, missing)
    missing = [f"{k} {n}" for k, n in jobs if (k, n) not in done]
    write(scale, target, args, started, missing)


if __name__ == "__main__":
    main()
