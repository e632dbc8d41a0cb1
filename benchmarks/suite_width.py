"""A uniformly narrower network with about a target number of MACs (width multiplier).

vgg_small: keras_slim.zoo.models.vgg's `width` argument. Builders without one (resnet20):
the same share of channels removed from every channel group (keras_slim.core.plan with
scope="layer", rounding 1), rebuilt; which channels go does not matter, since the
result is re-initialised and trained from scratch. The multiplier is found by bisection
on keras_slim.core.metrics.profile MACs.
"""
from keras_slim.core import metrics
from keras_slim.core.plan import l1_norm_plan
from keras_slim.core.rebuild import rebuild


def width_model(ctx, name, width):
    try:
        return ctx.build(name, width=width)
    except TypeError:  # the builder has no width multiplier
        full = ctx.build(name)
        if width >= 1.0:
            return full
        return rebuild(full, l1_norm_plan(full, 1.0 - width, scope="layer", round_to=1),
                       compensate=False)


def uniform_width(ctx, name, target_macs, iterations=14):
    """(model, width, macs) with MACs closest to target_macs among the widths tried."""
    lo, hi = 0.02, 1.0
    best = None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        model = width_model(ctx, name, mid)
        macs = metrics.profile(model)["macs"]
        if best is None or abs(macs - target_macs) < abs(best[2] - target_macs):
            best = (model, mid, macs)
        if macs > target_macs:
            hi = mid
        else:
            lo = mid
    return best
