"""Dynamic Channel Execution on real Fashion-MNIST: CUCB vs random channel selection.

For every seed: a baseline trained E + F epochs, and for p in {0.5, 0.3} and policy in
{cucb, random}: DCE training for E epochs with p of each conv layer's channels active
per step (compact execution), keep the p most salient channels (mean Taylor saliency
per channel, the bandit's mu), rebuild, fine-tune F epochs. Same initial weights and
batches per seed for every row. Prints and writes (--out) mean ± std over seeds of test
accuracy (right after rebuild and after fine-tuning), params, FLOPs and wall time.

    python -m benchmarks.dce_fashion_mnist            # 3 seeds, 2 + 1 epochs, ~60 min
    python -m benchmarks.dce_fashion_mnist --quick    # 1 seed, 10k images, 1 + 1 epochs
    python -m benchmarks.dce_fashion_mnist --model resnet20 --train_images 20000
    python -m benchmarks.dce_fashion_mnist --fractions 0.5,0.7,0.9,1.0 --policies cucb \
        --seeds 1 --epochs 6 --finetune_epochs 2 --train_images 20000   # accuracy vs p
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    accuracy, build_model, cosine_compile, fashion_mnist, publish, run_header)
from keras_slim.compat import keras  # noqa: E402
from keras_slim.core import metrics  # noqa: E402
from keras_slim.core.batch_norm_statistics import recalibrate_batch_norm  # noqa: E402
from keras_slim.core.rebuild import rebuild  # noqa: E402
from keras_slim.dce import CUCBCallback, dce_plan  # noqa: E402
from keras_slim.dce.gates import gate_model, strip_gates  # noqa: E402
from keras_slim.training import distillation  # noqa: E402


def _result(model, test, start, after_rebuild, keep_model):
    """A row's figures for a trained `model` (timed from `start`), with it if keep_model."""
    profile = metrics.profile(model)
    row = {"after_rebuild": after_rebuild, "accuracy": accuracy(model, test),
           "params": profile["params"], "macs": profile["macs"],
           "seconds": time.time() - start}
    if keep_model:
        row["model"] = model
    return row


def dce_row(initial, build, train, test, fraction, policy, seed, epochs, finetune_epochs,
            warmup_steps, verbose, keep_model=False, recalibration_steps=0, distill=False):
    """One DCE row; with keep_model the result also holds the compact model ("model").
    recalibration_steps > 0: re-estimate the rebuilt model's BN statistics on that many
    training batches before fine-tuning (the accuracy without it: "after_rebuild_raw").
    distill: fine-tune by distillation from the DCE-trained model, gates stripped."""
    keras.utils.set_random_seed(seed)
    model = build()
    model.set_weights(initial)
    start = time.time()
    gated = gate_model(model, fraction)
    steps = int(train.cardinality())
    cosine_compile(steps * epochs)(gated)
    callback = CUCBCallback(warmup_steps=warmup_steps, policy=policy, seed=seed)
    gated.fit(train, epochs=epochs, callbacks=[callback], verbose=verbose)
    plain = strip_gates(gated)
    plan = dce_plan(callback, plain, fraction, round_to=8)
    compact = rebuild(plain, plan)
    cosine_compile(steps * finetune_epochs)(compact)
    after_rebuild = accuracy(compact, test)
    raw = None
    if recalibration_steps:
        raw = after_rebuild
        recalibrate_batch_norm(compact, train, recalibration_steps)
        after_rebuild = accuracy(compact, test)
    trainer = compact
    if distill:
        trainer = cosine_compile(steps * finetune_epochs)(
            distillation.distiller(compact, distillation.frozen_copy(plain)))
    trainer.fit(train, epochs=finetune_epochs, verbose=verbose)
    row = _result(compact, test, start, after_rebuild, keep_model)
    if raw is not None:
        row["after_rebuild_raw"] = raw
    return row


def baseline_row(initial, build, train, test, seed, epochs, verbose, keep_model=False):
    """The unpruned model trained normally; with keep_model the result holds it ("model")."""
    keras.utils.set_random_seed(seed)
    model = build()
    model.set_weights(initial)
    start = time.time()
    cosine_compile(int(train.cardinality()) * epochs)(model)
    model.fit(train, epochs=epochs, verbose=verbose)
    return _result(model, test, start, None, keep_model)


def summarise(rows):
    def stat(key):
        values = np.array([r[key] for r in rows], dtype=np.float64)
        return float(values.mean()), float(values.std())
    out = {k: stat(k) for k in ("accuracy", "params", "macs", "seconds")}
    for key in ("after_rebuild", "after_rebuild_raw"):
        if rows[0].get(key) is not None:
            out[key] = stat(key)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--epochs", type=int, default=2, help="DCE training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=1)
    parser.add_argument("--fractions", default="0.5,0.3")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--policies", default="cucb,random",
                        help="channel selection policies to compare")
    parser.add_argument("--train_images", type=int, default=None,
                        help="train on the first N training images (default: all 60k)")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 1 + 1 epochs on 10k training images")
    parser.add_argument("--recalibration_steps", type=int, default=20,
                        help="re-estimate BN statistics after the rebuild on this many "
                             "training batches (0: off, as in runs before 2026-12-06)")
    parser.add_argument("--out", default="benchmarks/results/dce.md")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.finetune_epochs, args.seeds = 1, 1, 1
        args.warmup_steps = min(args.warmup_steps, 20)
    fractions = [float(f) for f in args.fractions.split(",")]
    policies = args.policies.split(",")
    if not policies or set(policies) - {"cucb", "random"}:
        parser.error(f"--policies takes cucb and/or random, got {args.policies!r}")
    train_split, train, test, info = fashion_mnist(args.quick, args.batch_size,
                                                   train_images=args.train_images)

    def build():
        return build_model(args.model, info)

    verbose = 2
    results = {"baseline": []}
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        initial = build().get_weights()
        print(f"\n== seed {seed}: baseline, {args.epochs + args.finetune_epochs} epochs")
        results["baseline"].append(baseline_row(initial, build, train, test, seed,
                                                args.epochs + args.finetune_epochs, verbose))
        for fraction in fractions:
            for policy in policies:
                name = f"DCE p={fraction} {policy}"
                print(f"\n== seed {seed}: {name}")
                results.setdefault(name, []).append(dce_row(
                    initial, build, train, test, fraction, policy, seed, args.epochs,
                    args.finetune_epochs, args.warmup_steps, verbose,
                    recalibration_steps=args.recalibration_steps))
    table = {name: summarise(rows) for name, rows in results.items()}
    base = table["baseline"]

    def pm(value, scale=100, digits=2):
        mean, std = value
        return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"

    lines = [
        f"## Dynamic Channel Execution on Fashion-MNIST "
        f"({'QUICK run' if args.quick else 'full run'})", "",
        *run_header(),
        f"- model {args.model}, train split {train_split}, batch {args.batch_size}, SGD "
        f"momentum 0.9, lr 0.05 cosine per phase; {args.seeds} seed(s); baseline "
        f"{args.epochs + args.finetune_epochs} epochs; DCE {args.epochs} epochs with p active "
        f"(τ = {args.warmup_steps} random warm-up steps, exploration 1, compact execution), "
        f"keep the p most salient channels per layer (rounded to 8), "
        + (f"re-estimate BN statistics on {args.recalibration_steps} training batches "
           f"(keras_slim.core.batch_norm_statistics), " if args.recalibration_steps else "")
        + f"fine-tune {args.finetune_epochs} epoch(s)",
        "",
        "| row | test acc % (mean ± std) | after rebuild, before FT % "
        + ("(BN re-estimated / as trained) " if args.recalibration_steps else "")
        + "| Δ vs baseline pt | params | MACs | wall time / baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        rebuild_acc = pm(row["after_rebuild"]) if "after_rebuild" in row else "–"
        if "after_rebuild_raw" in row:
            rebuild_acc += f" / {pm(row['after_rebuild_raw'])}"
        lines.append(
            f"| {name} | {pm(row['accuracy'])} | {rebuild_acc} | "
            f"{100 * (row['accuracy'][0] - base['accuracy'][0]):+.2f} | "
            f"{row['params'][0]:,.0f} | {row['macs'][0]:,.0f} | "
            f"{row['seconds'][0] / base['seconds'][0]:.2f} |")
    if sorted(policies) == ["cucb", "random"]:
        lines += ["", "CUCB vs random (the paper: CUCB wins, most clearly with few "
                  "channels active):", ""]
    for fraction in fractions if sorted(policies) == ["cucb", "random"] else ():
        cucb = table[f"DCE p={fraction} cucb"]["accuracy"]
        rand = table[f"DCE p={fraction} random"]["accuracy"]
        diff = 100 * (cucb[0] - rand[0])
        noise = 100 * max(cucb[1], rand[1])
        verdict = ("one seed: no noise estimate" if args.seeds == 1 else
                   "CUCB better" if diff > noise else "random better" if -diff > noise
                   else "within seed noise")
        lines.append(f"- p = {fraction}: CUCB − random = {diff:+.2f} pt after fine-tuning "
                     f"(largest std {noise:.2f} pt): {verdict}")
    lines += ["", "<details><summary>per-seed rows (JSON)</summary>", "", "```json",
              json.dumps(results, indent=None), "```", "</details>", ""]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
