"""Step time of a SlimBatchNormalization model vs the same model with plain BN.

Goal (issue 4): ≤ 1.03×. Both models train on the same batches, interleaved A/B/A/B so
machine noise hits both; the figure is the ratio of the fastest round's per-step times (rounds on this VM are
either undisturbed or throttled as a whole; see dce_step_time.py).
    python benchmarks/slimming_step_time.py [--model vgg_small] [--steps 60] [--rounds 5]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_slim import models, slimming  # noqa: E402
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.network_slimming import default_compile  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    plain = models.build(args.model, input_shape=(28, 28, 1), num_classes=10)
    slim = slimming.slimmable(plain, l1=1e-4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * args.steps, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, len(x))
    times = {"plain": [], "slim": []}
    for model in (plain, slim):
        default_compile(model)
        model.fit(x[:args.batch_size * 5], y[:args.batch_size * 5], batch_size=args.batch_size,
                  epochs=1, verbose=0)  # trace and warm up
    for _ in range(args.rounds):
        for name, model in (("plain", plain), ("slim", slim)):
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / args.steps)
    plain_ms = 1000 * min(times["plain"])
    slim_ms = 1000 * min(times["slim"])
    ratio = slim_ms / plain_ms
    print(f"{FLAVOUR}: {args.model} batch {args.batch_size}: plain BN {plain_ms:.1f} ms/step, "
          f"SlimBN {slim_ms:.1f} ms/step, ratio {ratio:.3f} "
          f"(goal <= 1.03: {'met' if ratio <= 1.03 else 'NOT met'})")


if __name__ == "__main__":
    main()
