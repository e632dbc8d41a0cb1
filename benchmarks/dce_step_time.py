"""Training step time of DCE-gated models vs the plain model, side by side in one run.

Goals (issues 5, 18): gated at p = 1 <= 1.10x plain; compact execution at p = 0.5 <= 0.6x
(resnet20 / resnet56 too: residual groups run compact), <= 0.7x for mobilenet_v2.
Rows: the plain model; gated with compact execution at p = 1, 0.5, 0.3; gated with
masking only (compact=False) at p = 0.5, for reference. Every model trains on the same
batches with its CUCBCallback, interleaved A/B/C/... per round so machine noise hits all;
the figure is the ratio of the fastest round's per-step times: on this VM a round is
either undisturbed or throttled as a whole (bimodal: ~140 vs ~257 ms for the plain
model), so the median of a few rounds is a coin toss, the minimum is not. The CPU
columns give the process CPU time per step (all threads) of its least round: a host
that deschedules the VM does not add to it, so it is the steadier figure there.

    python -m benchmarks.dce_step_time [--model vgg_small] [--steps 30] [--rounds 7]
    python -m benchmarks.dce_step_time --write benchmarks/results/dce_step_time.md
    python -m benchmarks.dce_step_time --model resnet20 --input_shape 32,32,3 --write ...

vgg_small trains on 28x28x1 images (Fashion-MNIST size), the other models at 32x32x3
(CIFAR size) unless --input_shape says otherwise.
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks.common import (command, machine, random_batches, step_time_parser,  # noqa: E402
                               step_times)
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.dce import CUCBCallback  # noqa: E402
from keras_slim.dce.gates import gate_model  # noqa: E402
from keras_slim.zoo import models  # noqa: E402

GOALS = {"gated p=1.0 (compact)": 1.10, "gated p=0.5 (compact)": 0.60}
P05_GOAL = {"mobilenet_v2": 0.70}  # the goal for the inverted-residual net


def main():
    parser = step_time_parser(__doc__, steps=30, rounds=7)
    parser.add_argument("--write", default=None, help="Append the table to this file.")
    parser.add_argument("--input_shape", default=None,
                        help="H,W,C of the random images (default 28,28,1 for vgg_small, "
                             "32,32,3 otherwise).")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else \
        ((28, 28, 1) if args.model == "vgg_small" else (32, 32, 3))
    goals = dict(GOALS)
    if args.model in P05_GOAL:
        goals["gated p=0.5 (compact)"] = P05_GOAL[args.model]
    keras.utils.set_random_seed(0)
    plain = models.build(args.model, input_shape=shape, num_classes=10)
    runs = {"plain": (plain, [])}
    for p in (1.0, 0.5, 0.3):
        runs[f"gated p={p} (compact)"] = (gate_model(plain, p), [CUCBCallback(warmup_steps=10)])
    runs["gated p=0.5 (masking)"] = (gate_model(plain, 0.5, compact=False),
                                     [CUCBCallback(warmup_steps=10)])
    x, y = random_batches(args.batch_size, args.steps, shape)
    cpu = {}
    times = step_times(runs, x, y, args.batch_size, args.rounds, cpu_times=cpu)
    base, cpu_base = min(times["plain"]), min(cpu["plain"])
    lines = [f"### DCE step time, {FLAVOUR}, {args.model} {'x'.join(map(str, shape))}, "
             f"batch {args.batch_size}, {args.rounds} interleaved rounds of {args.steps} "
             "steps", "", f"{time.strftime('%Y-%m-%d')}, {machine()}, "
             f"TF {tf.__version__}; `{command()}`", "",
             "| model | ms/step (fastest round) | / plain | goal | all rounds, ms/step | "
             "CPU ms/step (least round) | CPU / plain |",
             "|---|---|---|---|---|---|---|"]
    for name, values in times.items():
        ms, ratio = 1000 * min(values), min(values) / base
        goal = goals.get(name)
        verdict = "" if goal is None else \
            f"<= {goal:.2f}: {'met' if ratio <= goal else 'NOT met'}"
        rounds = ", ".join(f"{1000 * v:.0f}" for v in values)
        lines.append(f"| {name} | {ms:.1f} | {ratio:.3f} | {verdict} | {rounds} | "
                     f"{1000 * min(cpu[name]):.1f} | {min(cpu[name]) / cpu_base:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        with open(args.write, "a") as f:
            f.write(table + "\n\n")


if __name__ == "__main__":
    main()
