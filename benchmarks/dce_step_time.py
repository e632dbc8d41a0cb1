"""Training step time of DCE-gated models vs the plain model, side by side in one run.

Goals (issue 5): gated at p = 1 <= 1.10x plain; compact execution at p = 0.5 <= 0.6x.
Rows: the plain model; gated with compact execution at p = 1, 0.5, 0.3; gated with
masking only (compact=False) at p = 0.5, for reference. Every model trains on the same
batches with its CUCBCallback, interleaved A/B/C/... per round so machine noise hits all;
the figure is the ratio of the fastest round's per-step times: on this VM a round is
either undisturbed or throttled as a whole (bimodal: ~140 vs ~257 ms for the plain
model), so the median of a few rounds is a coin toss, the minimum is not.

    python benchmarks/dce_step_time.py [--model vgg_small] [--steps 30] [--rounds 7]
    python benchmarks/dce_step_time.py --write benchmarks/results/dce_step_time.md
"""
import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_slim import models  # noqa: E402
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.dce import CUCBCallback  # noqa: E402
from keras_slim.gating import gate_model  # noqa: E402
from keras_slim.network_slimming import default_compile  # noqa: E402

GOALS = {"gated p=1.0 (compact)": 1.10, "gated p=0.5 (compact)": 0.60}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--write", default=None, help="Append the table to this file.")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    plain = models.build(args.model, input_shape=(28, 28, 1), num_classes=10)
    runs = {"plain": (plain, [])}
    for p in (1.0, 0.5, 0.3):
        runs[f"gated p={p} (compact)"] = (gate_model(plain, p), [CUCBCallback(warmup_steps=10)])
    runs["gated p=0.5 (masking)"] = (gate_model(plain, 0.5, compact=False),
                                     [CUCBCallback(warmup_steps=10)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * args.steps, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, len(x))
    times = {name: [] for name in runs}
    for model, callbacks in runs.values():
        default_compile(model)
        model.fit(x[:args.batch_size * 5], y[:args.batch_size * 5], batch_size=args.batch_size,
                  epochs=1, verbose=0, callbacks=callbacks)  # trace and warm up
    for _ in range(args.rounds):
        for name, (model, callbacks) in runs.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False,
                      callbacks=callbacks)
            times[name].append((time.perf_counter() - start) / args.steps)
    base = min(times["plain"])
    lines = [f"### DCE step time, {FLAVOUR}, {args.model}, batch {args.batch_size}, "
             f"{args.rounds} interleaved rounds of {args.steps} steps",
             "", f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores, "
             f"TF {tf.__version__}; `python {' '.join(sys.argv)}`", "",
             "| model | ms/step (fastest round) | / plain | goal | all rounds, ms/step |", "|---|---|---|---|---|"]
    for name, values in times.items():
        ms, ratio = 1000 * min(values), min(values) / base
        goal = GOALS.get(name)
        verdict = "" if goal is None else \
            f"<= {goal:.2f}: {'met' if ratio <= goal else 'NOT met'}"
        rounds = ", ".join(f"{1000 * v:.0f}" for v in values)
        lines.append(f"| {name} | {ms:.1f} | {ratio:.3f} | {verdict} | {rounds} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        with open(args.write, "a") as f:
            f.write(table + "\n\n")


if __name__ == "__main__":
    main()
