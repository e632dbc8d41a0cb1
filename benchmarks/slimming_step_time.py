"""Step time of a SlimBatchNormalization model vs the same model with plain BN.

Goal (issue 4): ≤ 1.03×. Both models train on the same batches, interleaved A/B/A/B so
machine noise hits both; the figure is the ratio of the fastest round's per-step times
(rounds on this VM are either undisturbed or throttled as a whole; see dce_step_time.py).
    python -m benchmarks.slimming_step_time [--model vgg_small] [--steps 60] [--rounds 5]
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import random_batches, step_time_parser, step_times  # noqa: E402
from keras_slim import slimming  # noqa: E402
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.zoo import models  # noqa: E402


def main():
    args = step_time_parser(__doc__, steps=60, rounds=5).parse_args()
    keras.utils.set_random_seed(0)
    plain = models.build(args.model, input_shape=(28, 28, 1), num_classes=10)
    slim = slimming.slimmable(plain, l1=1e-4)
    x, y = random_batches(args.batch_size, args.steps)
    times = step_times({"plain": (plain, []), "slim": (slim, [])}, x, y, args.batch_size,
                       args.rounds)
    plain_ms = 1000 * min(times["plain"])
    slim_ms = 1000 * min(times["slim"])
    ratio = slim_ms / plain_ms
    print(f"{FLAVOUR}: {args.model} batch {args.batch_size}: plain BN {plain_ms:.1f} ms/step, "
          f"SlimBN {slim_ms:.1f} ms/step, ratio {ratio:.3f} "
          f"(goal <= 1.03: {'met' if ratio <= 1.03 else 'NOT met'})")


if __name__ == "__main__":
    main()
