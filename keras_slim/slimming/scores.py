"""|γ| as channel scores: per-layer values, the global γ plan, sparsity summaries."""
import numpy as np

from keras_slim import compat
from keras_slim.core.plan import _check_ratio, plan_from_scores
from keras_slim.core.walk import iter_layers
from keras_slim.slimming.layer import _check_l1, is_bn


def gamma_scores(model):
    """{layer path: |γ|} for every BatchNormalization (slim or not) that has a γ."""
    compat.ensure_model(model)
    scores = {}
    for path, layer in iter_layers(model):
        if is_bn(layer) and layer.scale:
            gamma = np.abs(np.asarray(layer.gamma, dtype=np.float64))
            if not np.isfinite(gamma).all():
                bad = "NaN" if np.isnan(gamma).any() else "inf"
                raise ValueError(f"γ of layer {path!r} became {bad} during training; lower "
                                 "the learning rate or λ and retrain.")
            scores[path] = gamma
    if not scores:
        raise ValueError(f"model {model.name!r} has no BatchNormalization layer with a γ.")
    return scores


def gamma_plan(model, ratio, scope="global", graph=None, **plan_kwargs):
    """ChannelPlan removing the `ratio` share of channels with the smallest |γ|
    (scope="global": one threshold over all layers, as in the paper). `graph`: the
    model's ChannelGraph if the caller has one."""
    _check_ratio(ratio)
    meta = dict(plan_kwargs.pop("meta", None) or {}, criterion="bn_gamma")
    return plan_from_scores(graph if graph is not None else model, gamma_scores(model), ratio,
                            scope=scope, meta=meta, **plan_kwargs)


def dry_run(model, ratio, **kwargs):
    """Print and return the table of what gamma_plan would remove; nothing is rebuilt."""
    table = gamma_plan(model, ratio, **kwargs).table()
    print(table)
    return table


def sparsity_summary(model, threshold=1e-2, bins=10):
    """Share of |γ| below `threshold` per layer and overall, with histogram counts.

    Returns {"threshold", "layers": {path: {"channels", "below", "share", "counts",
    "edges"}}, "overall": {same keys}}.
    """
    threshold = _check_l1(threshold, "threshold")
    scores = gamma_scores(model)

    def summary(values):
        counts, edges = np.histogram(values, bins=bins)
        below = int((values < threshold).sum())
        return {"channels": int(values.size), "below": below,
                "share": below / max(values.size, 1),
                "counts": counts.tolist(), "edges": edges.tolist()}

    return {"threshold": threshold,
            "layers": {p: summary(v) for p, v in scores.items()},
            "overall": summary(np.concatenate(list(scores.values())))}

