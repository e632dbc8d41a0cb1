"""How exact is bias compensation on a real net? (issue 3: measure the border error)

vgg_small on Fashion-MNIST shapes, random weights; the channels a 50% L1 plan removes get
BN γ = 0 and β ~ U(0.1, 1) (so they emit act(β) > 0). We compare the original with the
rebuilt model, with and without compensation, on real test images.
    python -m benchmarks.compensation_error [--ratio 0.5] [--samples 1000]
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.core.equivalence import check_equivalence  # noqa: E402
from keras_slim.core.graph import ChannelGraph  # noqa: E402
from keras_slim.core.plan import l1_norm_plan  # noqa: E402
from keras_slim.core.rebuild import rebuild  # noqa: E402
from keras_slim.zoo import data, models  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    x, _ = data.numpy_arrays("fashion_mnist", "test", take=args.samples)
    model = models.build("vgg_small", input_shape=(28, 28, 1), num_classes=10)
    graph = ChannelGraph(model)
    plan = l1_norm_plan(graph, args.ratio)
    rng = np.random.default_rng(0)
    for group in plan.groups:
        removed = np.setdiff1d(np.arange(group.size), group.keep)
        for op in graph.ops:  # every BN whose channels are this group's
            if op.class_name == "BatchNormalization":
                roots = graph.roots(op.out_ids())
                hit = np.isin(roots, graph.group_of(group.name).roots[removed])
                if hit.any():
                    gamma, beta, mean, var = op.layer.get_weights()
                    gamma[hit] = 0.0
                    beta[hit] = rng.uniform(0.1, 1.0, hit.sum())
                    op.layer.set_weights([gamma, beta, mean, var])
    reference = model.predict(x, verbose=0).argmax(1)
    print(f"{FLAVOUR}: vgg_small, {args.ratio:.0%} of channels removed, "
          f"{len(x)} Fashion-MNIST test images")
    for compensate in (True, False):
        rebuilt, report = rebuild(model, plan, compensate=compensate, return_report=True)
        err = check_equivalence(model, rebuilt, data=x)
        agree = (rebuilt.predict(x, verbose=0).argmax(1) == reference).mean()
        exact = sum(c.exact for c in report.compensations)
        print(f"  compensation {'on ' if compensate else 'off'}: max |Δlogit| "
              f"{err['max_abs']:.4g}, mean {err['mean_abs']:.4g}, top-1 agreement "
              f"{agree:.2%}; folded into {len(report.compensations)} consumers "
              f"({exact} exact, {len(report.compensations) - exact} border-approximate)")


if __name__ == "__main__":
    main()
