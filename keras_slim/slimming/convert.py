"""slimmable / strip: swap every BatchNormalization for a SlimBatchNormalization and back."""
import copy
import warnings

from keras_slim import compat
from keras_slim.compat import GraphError, keras
from keras_slim.core.walk import config_entry_at, copy_weights, iter_layers
from keras_slim.slimming.layer import (SlimBatchNormalization, _check_l1, bn_weights, is_bn,
                                       slim_layers)


def _check_model(model):
    compat.ensure_model(model)
    if not compat.is_graph_model(model):
        raise GraphError(f"model {model.name!r} is a subclassed model; only functional and "
                         "Sequential models can be converted.")



def _template_entry(layer):
    """class_name / module / registered_name keys of a layer's serialized form."""
    entry = keras.layers.serialize(layer)
    return {k: entry[k] for k in ("class_name", "module", "registered_name") if k in entry}



def slimmable(model, l1=1e-4, on_no_scale="warn", normalize=False, proximal=False):
    """A copy of `model` where every BatchNormalization is a SlimBatchNormalization with
    the same weights (same outputs) and penalty `l1`. The input model is not changed.

    normalize=True divides the penalty by the number of γ in the model (λ/N·Σ|γ|, the
    mean |γ|), so one λ fits models of any width. proximal=True applies the penalty as
    a soft-threshold step after each optimizer step instead of a loss term: train with
    the `ProximalL1` callback, and unimportant γ become exactly 0.

    A BN with scale=False has no γ to penalise: it stays a plain BN, with a warning
    (on_no_scale="warn") or a ValueError (on_no_scale="error").
    """
    _check_model(model)
    l1 = _check_l1(l1)
    if on_no_scale not in ("warn", "error"):
        raise ValueError(f"on_no_scale must be 'warn' or 'error', got {on_no_scale!r}.")
    bns = [(p, l) for p, l in iter_layers(model) if is_bn(l)]
    if not bns:
        raise ValueError(f"model {model.name!r} has no BatchNormalization layer.")
    no_scale = [p for p, l in bns if not l.scale]
    if no_scale and on_no_scale == "error":
        raise ValueError(f"BatchNormalization layer(s) {no_scale} have scale=False (no γ) "
                         "and cannot be slimmed.")
    for p in no_scale:
        warnings.warn(f"BatchNormalization layer {p!r} has scale=False (no γ): left as a "
                      "plain BatchNormalization, its channels get no sparsity penalty.",
                      stacklevel=2)
    if len(no_scale) == len(bns):
        raise ValueError(f"model {model.name!r}: no BatchNormalization layer has a γ "
                         "(all scale=False); there is nothing to slim.")
    if not isinstance(normalize, bool) or not isinstance(proximal, bool):
        raise ValueError("normalize and proximal must be True or False. Received: "
                         f"normalize={normalize!r}, proximal={proximal!r}")
    slimmed = [(p, l) for p, l in bns
               if type(l) is keras.layers.BatchNormalization and l.scale]  # not subclasses
    count = sum(int(l.gamma.shape[-1]) for _, l in slimmed)
    scale = 1.0 / max(count, 1) if normalize else 1.0
    template = _template_entry(SlimBatchNormalization(l1=l1))

    config = copy.deepcopy(compat.graph_config(model))
    for path, _ in slimmed:
        entry = config_entry_at(config, path)
        entry.update(copy.deepcopy(template))
        entry["config"].update(l1=l1, l1_scale=scale, proximal=proximal)
    new = compat.model_from_config(model, config, "converting")
    copy_weights(model, new, bn_weights)
    return new


def strip(model):
    """A copy of `model` with every SlimBatchNormalization back to a plain
    BatchNormalization (same weights, same outputs), for deployment/pruning."""
    _check_model(model)
    if not slim_layers(model):
        raise ValueError(f"model {model.name!r} has no SlimBatchNormalization layer.")
    template = _template_entry(keras.layers.BatchNormalization())
    config = copy.deepcopy(compat.graph_config(model))
    for path in slim_layers(model):
        entry = config_entry_at(config, path)
        entry.update(copy.deepcopy(template))
        for key in ("l1", "l1_scale", "proximal"):
            entry["config"].pop(key, None)
    new = compat.model_from_config(model, config, "converting")
    copy_weights(model, new, bn_weights)
    return new

