"""Plan + rebuild + weight copy of ResNet50 vs keras clone_model of the same model.

Goal (issue 3): ratio <= 3. Both timed in one run, median of --repeats.
    python -m benchmarks.rebuild_speed [--repeats 3] [--ratio 0.5]
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.core.plan import l1_norm_plan  # noqa: E402
from keras_slim.core.rebuild import rebuild  # noqa: E402


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.5)
    args = parser.parse_args()
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    clone = _median_seconds(lambda: keras.models.clone_model(model), args.repeats)
    ours = _median_seconds(lambda: rebuild(model, l1_norm_plan(model, args.ratio)),
                           args.repeats)
    ratio = ours / clone
    print(f"{FLAVOUR}: ResNet50 clone_model {clone:.2f}s; plan+rebuild+weights "
          f"{ours:.2f}s; ratio {ratio:.2f} (goal <= 3: {'met' if ratio <= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
