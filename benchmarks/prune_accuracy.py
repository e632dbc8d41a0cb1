"""Prune without losing accuracy (issue 15, item 5): Network Slimming with plain L1 vs the
proximal step (exact-zero γ) vs + data-aware compensation vs + distillation, DCE with and
without distillation, against the baseline, the pruned architectures and a uniform-width
net of equal MACs trained from scratch with the same total number of epochs.

    python -m benchmarks.prune_accuracy --quick     # 20k images, 2 + 1 epochs (CI-sized)
    python -m benchmarks.prune_accuracy --train_examples 60000 --epochs E --finetune_epochs F

Rows per model (--methods picks among L1, proximal, fade): baseline (E + F epochs,
test accuracy per epoch); plain L1 and proximal
sparsity training from scratch (E epochs, one run per method shared by the cuts: each
--ratios share of channels and each --macs share of MACs kept), pruned by global |γ|
(γ = 0 compensation), then for the proximal run also with the calibration mean
(rebuild(calibration_data=...)) and with that plus distillation from the baseline,
fine-tuned F epochs; fade: the library's pretrained path, ks.slim(pretrained=True) on
the baseline, with and without distillation from it, and with |γ| ranked against each
layer's mean (normalizer="mean"), and both (--fade_variants picks; the fine-tune has
--fade_finetune_epochs, the library's setting by default; its epochs add to the baseline's);
DCE (CUCB, E + F) at each --dce_fractions, with and without distillation; per cut, the
architecture of its best row and a uniform-width net of about its MACs, both
re-initialised and trained from scratch for as many epochs as that row had in all.
Columns: accuracy of the sparsity-trained (for fade: faded) model, right after pruning,
after fine-tuning.

A full run takes many hours on a CPU: --cache_dir keeps every finished step, so the same
command run again (after a stop, or with more --methods) resumes where it stopped.
"""
import argparse
import functools
import os
import time
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import (  # noqa: E402
    accuracy, build_model, cosine_compile, git_commit, log, machine, run_header,
    write_text)
from benchmarks.dce_fashion_mnist import dce_row  # noqa: E402
from benchmarks.run_cache import RunCache  # noqa: E402
from benchmarks.suite_width import uniform_width  # noqa: E402
from keras_slim import slimming  # noqa: E402
from keras_slim.compat import keras  # noqa: E402
from keras_slim.core import metrics  # noqa: E402
from keras_slim.pipeline import defaults as ks_defaults, slim as ks_slim  # noqa: E402
from keras_slim.slimming.pipeline import finetune, prune, sparsity_train  # noqa: E402
from keras_slim.training import distillation  # noqa: E402
from keras_slim.zoo import data  # noqa: E402


# fade row variants: name -> (distillation from the baseline, normalizer)
_FADE_VARIANTS = {"plain": (False, None), "distill": (True, None), "mean": (False, "mean"),
                  "mean+distill": (True, "mean")}


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="20k training images, 2 sparsity + 1 fine-tune epochs")
    parser.add_argument("--models", default="vgg_small,resnet20")
    parser.add_argument("--methods", default="L1,proximal,fade",
                        help="L1, proximal (sparsity training from scratch), fade "
                             "(ks.slim(pretrained=True) on the baseline)")
    parser.add_argument("--cache_dir", default=None,
                        help="keep each finished step (baseline, sparse models, rows) here; "
                             "a rerun with the same settings resumes where it stopped")
    parser.add_argument("--ratios", default="0.5,0.7", help="shares of channels removed")
    parser.add_argument("--macs", default="0.5", help="shares of MACs kept ('' for none)")
    parser.add_argument("--dce_fractions", default="0.5,0.3",
                        help="DCE p (share of channels active and kept; '' for none)")
    parser.add_argument("--dce_warmup_steps", type=int, default=100)
    parser.add_argument("--train_examples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="E: sparsity epochs")
    parser.add_argument("--finetune_epochs", type=int, default=None, help="F")
    parser.add_argument("--l1", type=float, default=1e-2,
                        help="plain L1 λ (the suite's value)")
    parser.add_argument("--proximal_l1", type=float, default=1e-1,
                        help="proximal λ: plain λ / (1 − momentum), since SGD momentum 0.9 "
                             "amplifies the L1 gradient 10× but not the proximal step")
    parser.add_argument("--fade_variants", default=",".join(_FADE_VARIANTS),
                        help="fade rows: plain, distill, mean (mean-normalised ranking), "
                             "mean+distill")
    parser.add_argument("--fade_finetune_epochs", type=int, default=None,
                        help="fine-tune epochs of the fade rows (default: the library's "
                             "pretrained setting)")
    parser.add_argument("--calibration", type=int, default=512,
                        help="training images for the calibration means")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not args.quick and None in (args.train_examples, args.epochs, args.finetune_epochs):
        parser.error("only --quick has a preset budget; give --train_examples, --epochs "
                     "and --finetune_epochs for another one.")
    args.train_examples = args.train_examples or 20000
    args.epochs = args.epochs or 2
    args.finetune_epochs = args.finetune_epochs or 1
    args.methods = _names(parser, "--methods", args.methods, ("L1", "proximal", "fade"))
    args.fade_variants = _names(parser, "--fade_variants", args.fade_variants,
                                tuple(_FADE_VARIANTS))
    args.out = args.out or ("benchmarks/results/prune_accuracy_quick.md" if args.quick
                            else "benchmarks/results/prune_accuracy.md")
    return args


def _names(parser, flag, value, choices):
    """A comma-separated flag as a list; an unknown name is one parser error."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = set(names) - set(choices)
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(choices)}")
    return names


def _cuts(args):
    """(label, ratio, target) per prune: shares of channels, then shares of MACs kept."""
    return [(f"{100 * r:g}%", r, None) for r in args.ratios] + \
        [(f"{100 * m:g}% MACs", None, {"macs": m}) for m in args.macs]


def _rows(name, args, load_train, test, x_cal, info, cache):
    """load_train() -> a new training dataset per step: its shuffle order then does not
    depend on the steps before it, so a resumed run trains as an uninterrupted one."""
    E, F = args.epochs, args.finetune_epochs
    steps = int(load_train().cardinality())
    keras.utils.set_random_seed(0)
    initial = build_model(name, info).get_weights()

    def fresh():
        model = build_model(name, info)
        model.set_weights(initial)
        return model

    def from_scratch(architecture, epochs=E + F, validation_data=None):
        keras.utils.set_random_seed(0)
        model = cosine_compile(steps * epochs)(keras.models.clone_model(architecture))
        history = model.fit(load_train(), epochs=epochs, verbose=0,
                            validation_data=validation_data)
        return model, history.history.get("val_accuracy", [])

    def step(key, make, keep_model=False):
        """(record, model loader) of one step: run, make() -> (record, model), or read
        back from the cache, its model loaded only when asked for."""
        key = f"{name} {key}"
        record = cache.record(key)
        if record is None:
            record, model = make()
            record["commit"] = commit
            cache.keep(key, record, model if keep_model else None)
            return record, lambda: model
        log(f"{key}: kept from an earlier run")
        return record, functools.lru_cache(maxsize=None)(lambda: cache.model(key))

    rows = []
    commit = git_commit()

    def make_baseline():
        start = time.time()
        base, curve = from_scratch(fresh(), validation_data=test)
        return {"row": "baseline", "epochs": E + F, "final": accuracy(base, test),
                "params": base.count_params(), "seconds": time.time() - start,
                "curve": curve}, base

    record, base = step("baseline", make_baseline, keep_model=True)
    base = base()
    rows.append(record)
    log(f"{name} baseline {record['final']:.4f}, test accuracy per epoch "
        + " ".join(f"{a:.4f}" for a in record["curve"]))
    full_macs = metrics.profile(base)["macs"]
    best_of = {}  # cut label -> (final, row, architecture loader, MACs ÷, epochs) of its best

    def keep_best(cut, row, architecture):
        if row["final"] > best_of.get(cut, (-1,))[0]:
            best_of[cut] = (row["final"], row["row"], architecture, row["macs_ratio"],
                            row["epochs"])

    def sparse_train(**kwargs):
        start = time.time()
        keras.utils.set_random_seed(0)
        slim, _ = sparsity_train(fresh(), load_train(), E, compile_fn=cosine_compile(steps * E),
                                 verbose=0, **kwargs)
        return {"sparse": accuracy(slim, test), "seconds": time.time() - start,
                "zeros": slimming.sparsity_summary(slim, threshold=1e-12)["overall"]["share"],
                "small": slimming.sparsity_summary(slim)["overall"]["share"]}, slim

    def pruned_row(label, cut, slim, sparse, ratio, target, calibrated=False, teacher=None):
        """Prune the sparse model `slim()`, fine-tune F epochs; one row, and the cut's best
        architecture."""
        def make():
            start = time.time()
            keras.utils.set_random_seed(0)
            pruned, _, report = prune(slim(), ratio, target=target,
                                      calibration_data=x_cal if calibrated else None)
            after = accuracy(cosine_compile(1)(pruned), test)
            model, _ = finetune(slimming.strip(pruned), load_train(), F,
                                compile_fn=cosine_compile(steps * F), verbose=0,
                                teacher=teacher() if teacher else None)
            return {"row": label, "epochs": E + F, **sparse, "after": after,
                    "final": accuracy(model, test), "params": model.count_params(),
                    "macs_ratio": report["macs_ratio"],
                    "seconds": sparse["seconds"] + time.time() - start}, model

        record, model = step(label, make, keep_model=True)
        rows.append(record)
        log(f"{name} {label}: sparse {record['sparse']:.4f}, after prune "
            f"{record['after']:.4f}, fine-tuned {record['final']:.4f}")
        keep_best(cut, record, model)

    for method, l1, proximal in (("L1", args.l1, False),
                                 ("proximal", args.proximal_l1, True)):
        if method not in args.methods:
            continue
        sparse, slim = step(f"{method} sparsity training",
                            lambda: sparse_train(l1=l1, proximal=proximal), keep_model=True)
        # plain L1 as the paper does it; the proximal step, then + calibration means,
        # then + distillation, each on top of the one before. The teacher is the baseline:
        # the sparse model (the library's from-scratch teacher) lowered this row by 1.2 pt
        # at 6 + 3 epochs, being 2.8 pt below the baseline itself.
        variants = [("", False, False)] if not proximal else \
            [("", False, False), (" + calibration", True, False),
             (" + calibration + distillation from the baseline", True, True)]
        for cut, ratio, target in _cuts(args):
            for suffix, calibrated, distilled in variants:
                teacher = (lambda: distillation.frozen_copy(base)) if distilled else None
                pruned_row(f"{method} {cut}{suffix}", cut, slim, sparse, ratio, target,
                           calibrated=calibrated, teacher=teacher)
    if "fade" in args.methods:
        # the library's pretrained path on the baseline: GammaFade (the cut's channels fade
        # to γ = β = 0, so the prune is exact) then fine-tuning, with and without
        # distillation from the baseline; its epochs add to the baseline's
        settings = ks_defaults(pretrained=True)
        fade_finetune = args.fade_finetune_epochs or settings["finetune_epochs"]
        extra = settings["epochs"] + fade_finetune
        # + mean-normalised: |γ| ranked against its own layer's mean; a trained net's |γ|
        # differ in scale between layers, and the global ranking drains whole layers
        for cut, ratio, target in _cuts(args):
            for variant in args.fade_variants:
                distill, normalizer = _FADE_VARIANTS[variant]
                # the default schedule keeps the labels (and cache keys) of earlier runs
                label = f"fade {cut} (ks.slim pretrained)" + (
                    " + distillation" if distill else "") + (
                    " + mean-normalised ranking" if normalizer else "") + (
                    f", {fade_finetune} fine-tune epochs" if args.fade_finetune_epochs
                    else "")

                def make():
                    start = time.time()
                    keras.utils.set_random_seed(0)
                    result = ks_slim(base, load_train(), ratio=ratio, target=target,
                                     pretrained=True, validation_data=test,
                                     distill=distill, verbose=0,
                                     finetune_epochs=fade_finetune,
                                     **({"normalizer": normalizer} if normalizer else {}))
                    report = result.report
                    return {"row": label, "epochs": E + F + extra,
                            "sparse": report["accuracy_sparse"],
                            "after": report["accuracy_pruned"],
                            "final": report["accuracy_after"],
                            "params": result.model.count_params(),
                            "macs_ratio": report["macs_ratio"],
                            "seconds": rows[0]["seconds"] + time.time() - start}, result.model

                record, model = step(label, make, keep_model=True)
                rows.append(record)
                log(f"{name} {label}: faded {record['sparse']:.4f}, after prune "
                    f"{record['after']:.4f}, fine-tuned {record['final']:.4f}")
                keep_best(cut, record, model)
    for p in args.dce_fractions:
        for distilled in (False, True):
            label = f"DCE p = {p:g}" + (" + distillation" if distilled else "")

            def make():
                r = dce_row(initial, lambda: build_model(name, info), load_train(), test, p,
                            "cucb", 0, E, F, args.dce_warmup_steps, 0,
                            recalibration_steps=20, distill=distilled)
                return {"row": label, "epochs": E + F, "after": r["after_rebuild"],
                        "final": r["accuracy"], "params": r["params"],
                        "macs_ratio": full_macs / r["macs"], "seconds": r["seconds"]}, None

            record, _ = step(label, make)
            rows.append(record)
            log(f"{name} {label}: {record['after']:.4f} -> {record['final']:.4f}")
    width_context = SimpleNamespace(build=lambda _, **kw: build_model(name, info, **kw))
    for cut, (_, label, architecture, macs_ratio, epochs) in best_of.items():
        def make_scratch():
            start = time.time()
            model, _ = from_scratch(architecture(), epochs)
            return {"row": f"scratch, architecture of {label}", "epochs": epochs,
                    "final": accuracy(model, test), "params": model.count_params(),
                    "macs_ratio": macs_ratio, "seconds": time.time() - start}, None

        def make_uniform():
            start = time.time()
            narrow, width, macs = uniform_width(width_context, name, full_macs / macs_ratio)
            model, _ = from_scratch(narrow, epochs)
            return {"row": f"scratch, uniform width {width:.2f} (MACs of {cut})",
                    "epochs": epochs, "final": accuracy(model, test),
                    "params": model.count_params(), "macs_ratio": full_macs / macs,
                    "seconds": time.time() - start}, None

        # keyed by the best row: a later run with a better row trains its own
        for key, make in ((f"scratch, architecture of {label}", make_scratch),
                          (f"scratch, uniform width, MACs of {label}", make_uniform)):
            record, _ = step(key, make)
            rows.append(record)
            log(f"{name} {record['row']}: {record['final']:.4f}")
    return rows


def _pct(value):
    return "" if value is None else f"{100 * value:.2f}"


def _table(name, rows):
    base = rows[0]["final"]
    lines = [f"### {name}", "",
             "| row | epochs | sparse acc % | γ = 0 | γ < 0.01 | after prune % | final % | "
             "Δ vs baseline pt | params | MACs ÷ | time s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['epochs']} | {_pct(r.get('sparse'))} | "
            f"{_pct(r.get('zeros'))} | {_pct(r.get('small'))} | {_pct(r.get('after'))} | "
            f"{_pct(r['final'])} | {100 * (r['final'] - base):+.2f} | {r['params']:,} | "
            f"{r.get('macs_ratio', 1.0):.2f} | {r['seconds']:.0f} |")
    curve = rows[0]["curve"]
    last = curve[-3:]
    moved = 100 * (max(last) - min(last))
    by_commit = {}  # a resumed run's rows can come from several commits
    for r in rows:
        by_commit.setdefault(r.get("commit", "unknown"), []).append(r["row"])
    made = ("- every row trained at commit " + next(iter(by_commit))
            if len(by_commit) == 1 else "- rows trained at several commits: " + "; ".join(
                f"{commit}: {', '.join(names)}" for commit, names in by_commit.items()))
    return lines + [
        "", "- baseline test accuracy per epoch: " + ", ".join(_pct(a) for a in curve),
        f"- it moved {moved:.2f} pt over its last {len(last)} epochs: "
        + ("converged (< 0.2 pt)" if len(last) == 3 and moved < 0.2 else
           "NOT converged by the < 0.2 pt rule"), made, ""]


def main():
    args = _parse()
    args.ratios, args.macs, args.dce_fractions = (
        [float(v) for v in values.split(",") if v.strip()]
        for values in (args.ratios, args.macs, args.dce_fractions))
    def load_train():
        return data.load("fashion_mnist", f"train[:{args.train_examples}]", batch_size=128,
                         seed=0)

    _, info = load_train()
    test, _ = data.load("fashion_mnist", "test", batch_size=512)
    x_cal, _ = data.numpy_arrays("fashion_mnist", "train", take=args.calibration)
    cache = RunCache(args.cache_dir, {key: getattr(args, key) for key in (
        "train_examples", "epochs", "finetune_epochs", "l1", "proximal_l1", "calibration",
        "dce_warmup_steps")})
    lines = [f"## Prune without losing accuracy ({'QUICK run' if args.quick else 'run'})", "",
             *run_header(), f"- machine: {machine()} (start of the run)",
             f"- Fashion-MNIST train[:{args.train_examples}], full test set; batch 128, SGD "
             f"momentum 0.9, lr 0.05 cosine per phase; E = {args.epochs} sparsity epochs, "
             f"F = {args.finetune_epochs} fine-tune epochs; baseline and scratch rows E + F",
             f"- plain L1 λ = {args.l1:g}; proximal λ = {args.proximal_l1:g}; global |γ| "
             f"prune (rounded to 8); calibration: {args.calibration} training images; "
             f"distillation: T = {distillation.DEFAULT_TEMPERATURE:g}, "
             f"α = {distillation.DEFAULT_ALPHA:g}; DCE: CUCB, {args.dce_warmup_steps} "
             "warm-up steps, BN statistics re-estimated on 20 batches after the rebuild",
             "- one seed", ""]
    for name in args.models.split(","):
        rows = _rows(name, args, lambda: load_train()[0], test, x_cal, info, cache)
        lines += _table(name, rows)
        write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
