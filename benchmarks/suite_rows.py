"""The results table of one model: baseline, slimming, DCE (CUCB and random), scratch,
uniform width and tfmot rows, each with accuracy, params, MACs, int8 size and latency.
"""
import os

from benchmarks import suite_runs
from benchmarks.common import int8_units, stamp
from benchmarks.suite_deploy import (export_float32, export_int8, int8_accuracy, latencies,
                                     sizes, tflite_name)
from benchmarks.suite_tables import goal, goals_table, mean_std, pct, table
from benchmarks.suite_tfmot import run_tfmot_row
from benchmarks.suite_width import uniform_width
from keras_slim import slimming
from keras_slim.core import metrics

POLICIES = ("cucb", "random")


def _slim(t):
    return f"slimming t={t:.0%}"


def _dce(p, policy):
    return f"DCE p={p} ({'CUCB' if policy == 'cucb' else 'random policy'})"


def _add(rows, name, accuracy, seconds, params, macs, after=None, **extra):
    row = rows.setdefault(name, {"row": name, "accuracy": [], "seconds": [],
                                 "after_rebuild": [], "params": params, "macs": macs})
    row["accuracy"].append(float(accuracy))
    row["seconds"].append(float(seconds))
    if after is not None:
        row["after_rebuild"].append(after)
    row.update(extra)
    return row


def _train_rows(ctx, name, log):
    """{row name: record} and {row name: seed-0 Keras model} (tfmot: its (int8, float32)
    .tflite paths)."""
    b = ctx.budget
    rows, keep = {}, {}
    for seed in range(b.seeds):
        log(f"{name} seed {seed}: baseline ({b.epochs + b.finetune_epochs} epochs)")
        r = suite_runs.baseline(ctx, name, seed)
        _add(rows, "baseline", r["accuracy"], r["seconds"], r["params"], r["macs"])
        keep.setdefault("baseline", r["model"])
        for p in b.dce_fractions:
            for policy in POLICIES:
                log(f"{name} seed {seed}: DCE p={p} {policy}")
                r = suite_runs.dce(ctx, name, p, policy, seed)
                _add(rows, _dce(p, policy), r["accuracy"], r["seconds"], r["params"],
                     r["macs"], after={"rebuilt": r["after_rebuild"]})
                keep.setdefault(_dce(p, policy), r["model"])

    log(f"{name}: sparsity training λ={b.l1} ({b.epochs} epochs)")
    slim, sparse_seconds = suite_runs.sparsity_model(ctx, name, b.l1, 0)
    share = slimming.sparsity_summary(slim)["overall"]
    for t in b.ratios:
        log(f"{name}: slimming t={t:.0%}: prune, rebuild, fine-tune {b.finetune_epochs}")
        r = suite_runs.prune_and_finetune(ctx, slim, t, b.finetune_epochs)
        profile = metrics.profile(r["model"])
        _add(rows, _slim(t), r["accuracy"], sparse_seconds + r["seconds"],
             profile["params"], profile["macs"], after=r["after_rebuild"],
             gamma_share=share["share"])
        keep[_slim(t)] = r["model"]

    total = b.epochs + b.finetune_epochs
    slim70, dce05 = _slim(max(b.ratios)), _dce(max(b.dce_fractions), "cucb")
    for source in (slim70, dce05):
        log(f"{name}: scratch ({source} architecture), {total} epochs")
        model, acc, seconds = suite_runs.train_from_scratch(ctx, keep[source], 0, total)
        profile = metrics.profile(model)
        row = f"scratch ({source} architecture)"
        _add(rows, row, acc, seconds, profile["params"], profile["macs"])
        keep[row] = model

    target = rows[slim70]["macs"]
    arch, width, macs = uniform_width(ctx, name, target)
    log(f"{name}: uniform width {width:.3f} ({macs:,} MACs vs {target:,}), {total} epochs")
    model, acc, seconds = suite_runs.train_from_scratch(ctx, arch, 0, total)
    row = "uniform width"
    _add(rows, row, acc, seconds, metrics.profile(model)["params"], macs, width=width)
    keep[row] = model

    log(f"{name}: tfmot magnitude pruning to {rows[slim70]['params']:,} non-zero params "
        "(tf_keras child process)")
    path = tflite_name(ctx.workdir, name, "tfmot")
    float_path = tflite_name(ctx.workdir, name, "tfmot", "float32")
    r = run_tfmot_row(ctx, name, 0, rows[slim70]["params"], ctx.workdir, path, float_path)
    _add(rows, "tfmot magnitude pruning", r["accuracy"], r["seconds"], r["params"],
         r["macs"], nonzero_params=r["nonzero_params"], nonzero_macs=r["nonzero_macs"],
         kernel_sparsity=r["kernel_sparsity"], flavour=r["flavour"])
    keep["tfmot magnitude pruning"] = (path, float_path)
    return rows, keep


# Latency variants -> (file, XNNPACK on), and the prefix of their fields in a row.
# XNNPACK is LiteRT's default; the builtin int8 kernels' cost follows the channel count.
VARIANTS = {"int8": ("int8", True), "float32": ("float32", True),
            "int8 builtin": ("int8", False)}
FIELDS = {"int8": "", "float32": "float32_", "int8 builtin": "builtin_"}


def _deploy(ctx, name, rows, keep, log):
    b = ctx.budget
    paths = {}  # (row, "int8" | "float32") -> .tflite
    for row, model in keep.items():
        if isinstance(model, tuple):
            paths[row, "int8"], paths[row, "float32"] = model
            continue
        log(f"{name}: int8 and float32 export of {row}")
        paths[row, "int8"] = export_int8(model, tflite_name(ctx.workdir, name, row), ctx.x_cal)
        paths[row, "float32"] = export_float32(
            model, tflite_name(ctx.workdir, name, row, "float32"))
    files = {(row, v): (paths[row, mode], xnnpack) for row in keep
             for v, (mode, xnnpack) in VARIANTS.items()}
    log(f"{name}: LiteRT latency, {b.latency_rounds} interleaved rounds x "
        f"{b.latency_runs} runs over {len(files)} file/kernel pairs")
    lat = latencies(files, b.latency_runs, b.latency_rounds)
    for row in keep:
        path = paths[row, "int8"]
        size, zipped = sizes(path)
        rows[row].update(int8_accuracy=int8_accuracy(path, ctx.x_test, ctx.y_test),
                         size_kb=size, gzip_kb=zipped)
        for variant, prefix in FIELDS.items():
            figures = lat[row, variant]
            rows[row].update({f"{prefix}latency_ms": figures["median_ms"],
                              f"{prefix}p90_ms": figures["p90_ms"],
                              f"{prefix}round_medians": figures["round_medians"]})


def _goals(name, rows, ratios):
    base = rows["baseline"]
    out, lines = [], []
    for t in ratios:
        r = rows[_slim(t)]
        flops = base["macs"] / r["macs"]
        gains = {key: base[key] / r[key] for key in
                 ("latency_ms", "builtin_latency_ms", "float32_latency_ms")}
        out.append(goal(f"int8 latency gain / FLOPs reduction, {_slim(t)}, XNNPACK",
                        gains["latency_ms"] / flops, ">=", 0.85, name))
        out.append(goal(f"int8 latency gain / FLOPs reduction, {_slim(t)}, builtin "
                        "kernels (no XNNPACK)", gains["builtin_latency_ms"] / flops, ">=",
                        0.85, name))
        lines.append([_slim(t), f"{flops:.2f}×"] + [
            f"{gains[key]:.2f}× ({gains[key] / flops:.2f})"
            for key in ("latency_ms", "builtin_latency_ms", "float32_latency_ms")])
    slim, tfmot = rows[_slim(max(ratios))], rows["tfmot magnitude pruning"]
    gap = 100 * (slim["int8_accuracy"] - tfmot["int8_accuracy"])
    where = f"{name}; int8 acc. slimmed − tfmot {gap:+.2f} pt"
    out.append(goal(f"tfmot int8 latency / {_slim(max(ratios))} int8 latency, XNNPACK",
                    tfmot["latency_ms"] / slim["latency_ms"], ">=", 2, where))
    out.append(goal(f"tfmot int8 latency / {_slim(max(ratios))} int8 latency, builtin "
                    "kernels (no XNNPACK)",
                    tfmot["builtin_latency_ms"] / slim["builtin_latency_ms"], ">=", 2, where))
    out.append(goal(f"tfmot int8 size / {_slim(max(ratios))} int8 size",
                    tfmot["size_kb"] / slim["size_kb"], ">=", 3, where))
    return out, lines


def _markdown(ctx, name, rows, goals, gain_lines):
    b = ctx.budget
    base = mean_std(rows["baseline"]["seconds"])[0]
    header = ["row", "test acc %", "after rebuild, before FT % (bias comp. / none)",
              "int8 acc %", "params", "MACs", "int8 KB", "ms int8 XNNPACK (1 thread)",
              "ms int8 builtin", "ms float32 XNNPACK", "train time / baseline"]
    body = []
    for r in rows.values():
        after = "–"
        if r["after_rebuild"] and "compensated" in r["after_rebuild"][0]:
            a = r["after_rebuild"][0]
            after = f"{100 * a['compensated']:.2f} / {100 * a['uncompensated']:.2f}"
        elif r["after_rebuild"]:
            after = pct([a["rebuilt"] for a in r["after_rebuild"]])
        params = f"{r['params']:,}"
        if "nonzero_params" in r:
            params += f" ({r['nonzero_params']:,} non-zero)"
        body.append([r["row"], pct(r["accuracy"]), after, f"{100 * r['int8_accuracy']:.2f}",
                     params, f"{r['macs']:,}", f"{r['size_kb']:.1f}",
                     f"{r['latency_ms']:.3f}", f"{r['builtin_latency_ms']:.3f}",
                     f"{r['float32_latency_ms']:.3f}",
                     f"{mean_std(r['seconds'])[0] / base:.2f}"])
    slim70 = _slim(max(b.ratios))
    tfmot = rows["tfmot magnitude pruning"]
    ablation = []
    for p in b.dce_fractions:
        cucb, rand = (mean_std(rows[_dce(p, k)]["accuracy"]) for k in POLICIES)
        diff, spread = 100 * (cucb[0] - rand[0]), 100 * max(cucb[1], rand[1])
        ablation.append(f"- DCE p = {p}: CUCB − random policy = {diff:+.2f} pt test "
                        f"accuracy over {cucb[2]} seed(s); " + (
                            "a single seed gives no noise estimate" if cucb[2] < 2 else
                            f"larger seed std {spread:.2f} pt: " +
                            ("CUCB better" if diff > spread else "random better"
                             if -diff > spread else "within seed noise")))
    notes = [
        f"- Budget ({b.label}): first {b.train_examples:,} {b.dataset} training images, "
        f"test accuracy on the first {b.test_examples:,} test images; batch "
        f"{b.batch_size}, SGD momentum 0.9, lr 0.05 cosine-decayed per phase. Baseline, "
        f"scratch and uniform-width rows: {b.epochs + b.finetune_epochs} epochs. Slimming: "
        f"{b.epochs} epoch(s) sparsity training (λ = {b.l1}), prune t of the channels by "
        f"global |γ| (rounded to 8), rebuild, {b.finetune_epochs} fine-tune epoch(s); "
        f"{rows[slim70]['gamma_share']:.1%} of |γ| < 0.01 after sparsity training. DCE: "
        f"{b.epochs} epoch(s) with p of each conv group active (τ = {b.dce_warmup_steps} "
        f"random warm-up steps), keep the p most salient channels, rebuild, "
        f"{b.finetune_epochs} fine-tune epoch(s) (benchmarks/dce_fashion_mnist.dce_row).",
        f"- Seeds: baseline and DCE rows {b.seeds} seed(s) (mean ± std); every other row "
        "1 seed (seed 0). Every row of a seed starts from the same initial weights, "
        "except scratch and uniform width (fresh initialisation).",
        "- Scratch rows: the pruned architecture re-initialised with "
        "keras.models.clone_model and trained like the baseline. Uniform width: width "
        f"multiplier {rows['uniform width']['width']:.3f} found by bisection on MACs "
        f"against {slim70} (see benchmarks/suite_width.py).",
        f"- tfmot row: run under {tfmot['flavour']} in a child process "
        "(benchmarks/suite_tfmot.py), since prune_low_magnitude wraps tf_keras layers only; "
        f"{b.epochs} normal epoch(s), then Conv2D/Dense kernels pruned to "
        f"{tfmot['kernel_sparsity']:.1%} sparsity (PolynomialDecay) during "
        f"{b.finetune_epochs} epoch(s) with UpdatePruningStep, strip_pruning, int8. Its "
        f"MACs are what LiteRT executes (dense kernels); skipping zeros would leave "
        f"{tfmot['nonzero_macs']:,}. Its gzip -9 size is {tfmot['gzip_kb']:.1f} KB "
        f"(slimmed {rows[slim70]['gzip_kb']:.1f} KB).",
        "- int8 accuracy, size and latency are of the seed-0 model of each row.",
        "- int8: full-integer post-training quantization (export.convert, "
        f"{b.calibration} calibration images); int8 accuracy on the same test images. "
        f"Latency (LiteRT): export.benchmark_tflite, batch 1, 1 thread, median of "
        f"{b.latency_rounds} interleaved rounds of {b.latency_runs} runs over all files of "
        "this table. XNNPACK: LiteRT's default CPU delegate; builtin: the int8 file run "
        "without it (xnnpack=False). Raw p90s and per-round medians: the part's JSON.",
        "- Train time: wall time of the row's training, pruning/rebuild and its test "
        "evaluations, divided by the baseline's (slimming rows include the sparsity "
        "training they share; the tfmot row is timed inside its tf_keras process).",
    ]
    return "\n".join([
        f"### {name}: results ({b.label} run)", "", stamp(), "", table(header, body), "",
        "CUCB vs the random policy (the DCE paper's ablation: CUCB should win, most "
        "clearly with few channels active):", "", *ablation, "", *notes, "",
        f"#### {name}: deployment ratios ({b.label} run)", "", stamp(), "",
        table(["model", "FLOPs reduction", "int8 XNNPACK latency gain (/ FLOPs red.)",
               "int8 builtin latency gain (/ FLOPs red.)",
               "float32 XNNPACK latency gain (/ FLOPs red.)"], gain_lines), "",
        f"int8 units this CPU lists: {int8_units()}. On the CPU of "
        "results/litert_conv_scaling.md (`python -m benchmarks.litert_conv_scaling`), one "
        "XNNPACK int8 3x3 convolution took about the same time at 8 to 64 channels, while "
        "the builtin int8 kernels and XNNPACK float32 grew with the channels; where that "
        "holds, removing channels of the narrow layers saves little XNNPACK int8 time. "
        "The builtin and float32 columns show the gain where cost follows the channels.",
        "",
        f"Slimmed {slim70} vs tfmot at matched non-zero parameters: test accuracy "
        f"{pct(rows[slim70]['accuracy'])} vs {pct(tfmot['accuracy'])} (int8 "
        f"{100 * rows[slim70]['int8_accuracy']:.2f} vs {100 * tfmot['int8_accuracy']:.2f}); "
        f"int8 latency {rows[slim70]['latency_ms']:.3f} vs {tfmot['latency_ms']:.3f} ms "
        f"(builtin kernels {rows[slim70]['builtin_latency_ms']:.3f} vs "
        f"{tfmot['builtin_latency_ms']:.3f} ms, float32 "
        f"{rows[slim70]['float32_latency_ms']:.3f} vs {tfmot['float32_latency_ms']:.3f} ms); "
        f"int8 size {rows[slim70]['size_kb']:.1f} vs {tfmot['size_kb']:.1f} KB.", "",
        goals_table(goals), ""])


def run(ctx, name, log):
    """Train, export and benchmark every row of `name`; returns the part's record."""
    os.makedirs(ctx.workdir, exist_ok=True)
    rows, keep = _train_rows(ctx, name, log)
    _deploy(ctx, name, rows, keep, log)
    order = ["baseline"] + [_slim(t) for t in ctx.budget.ratios] + \
        [_dce(p, policy) for p in ctx.budget.dce_fractions for policy in POLICIES] + \
        [r for r in rows if r.startswith("scratch")] + \
        ["uniform width", "tfmot magnitude pruning"]
    rows = {r: rows[r] for r in order}
    goals, gain_lines = _goals(name, rows, ctx.budget.ratios)
    return {"rows": rows, "goals": goals,
            "markdown": _markdown(ctx, name, rows, goals, gain_lines)}
