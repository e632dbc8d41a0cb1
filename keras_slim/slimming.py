"""Network Slimming (Liu et al., ICCV 2017): sparsify BN scale factors, prune by |γ|.

Workflow::

    slim = slimmable(model, l1=1e-4)          # every BN -> SlimBatchNormalization
    slim.compile(...)
    slim.fit(..., callbacks=[L1Schedule(lambda e: 1e-4 * min(1, (e + 1) / 5))])
    print(sparsity_summary(slim)["overall"])
    plan = gamma_plan(slim, 0.5)              # global |γ| percentile -> ChannelPlan
    small = rebuild(strip(slim), plan)        # strip: plain BN for deployment

The penalty λ·Σ|γ| is added with `add_loss` on every call (like a weight regularizer,
so it is also part of the `evaluate` loss). λ lives in a non-trainable weight of each
layer, read inside the traced step, so `set_l1` / `L1Schedule` change it without
recompiling.
"""
import copy
import math
import warnings

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import GraphError, keras, register_serializable
from keras_slim.plan import _check_ratio, plan_from_scores

_L1_WEIGHT = "l1_lambda"


def _check_l1(value, where="l1"):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a float >= 0, got {value!r}.") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{where} must be a finite float >= 0, got {value!r}.")
    return value


@register_serializable()
class SlimBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose scale γ carries an L1 penalty `l1`·Σ|γ| in the loss.

    Works on any rank (after Conv: per filter; after Dense: per neuron). `l1` is held
    in a non-trainable scalar weight named "l1_lambda", created after (so listed after)
    the four BN weights; `bn_weights(layer)` gives the plain-BN part.
    """

    def __init__(self, l1=1e-4, **kwargs):
        super().__init__(**kwargs)
        self._initial_l1 = _check_l1(l1, f"l1 of layer {kwargs.get('name', '')!r}")
        self._l1_var = None

    def build(self, input_shape):
        super().build(input_shape)
        self._l1_var = self.add_weight(
            name=_L1_WEIGHT, shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self._initial_l1))

    @property
    def l1(self):
        return float(np.asarray(self._l1_var)) if self._l1_var is not None \
            else self._initial_l1

    @l1.setter
    def l1(self, value):
        value = _check_l1(value, f"l1 of layer {self.name!r}")
        self._initial_l1 = value
        if self._l1_var is not None:
            self._l1_var.assign(value)

    def penalty(self):
        """λ·Σ|γ| as a tensor (0 without γ)."""
        if not self.scale:
            return tf.constant(0.0)
        gamma = tf.cast(tf.convert_to_tensor(self.gamma), tf.float32)
        return tf.convert_to_tensor(self._l1_var) * tf.reduce_sum(tf.abs(gamma))

    def call(self, inputs, training=None, **kwargs):
        outputs = super().call(inputs, training=training, **kwargs)
        if self.scale:
            self.add_loss(self.penalty())
        return outputs

    def get_config(self):
        config = super().get_config()
        config["l1"] = self.l1  # the current λ, so a reload resumes the schedule
        return config


def _is_bn(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_slim(layer):
    return isinstance(layer, SlimBatchNormalization)


def bn_weights(layer):
    """The weights a plain BatchNormalization would have (γ, β, mean, var as present)."""
    lam = getattr(layer, "_l1_var", None)
    return [w for w in layer.weights if w is not lam]


def _walk(model, prefix=()):
    """(path, layer) of every layer, nested models inlined; path as in ChannelGraph."""
    for layer in model.layers:
        names = prefix + (layer.name,)
        if isinstance(layer, keras.Model):
            yield from _walk(layer, names)
        else:
            yield "/".join(names), layer


def slim_layers(model):
    """{path: SlimBatchNormalization} of a model."""
    return {p: l for p, l in _walk(model) if _is_slim(l)}


def _check_model(model):
    compat.ensure_model(model)
    if not compat.is_graph_model(model):
        raise GraphError(f"model {model.name!r} is a subclassed model; only functional and "
                         "Sequential models can be converted.")


# --- λ control ---------------------------------------------------------------------------
def set_l1(model, value):
    """Set λ of every SlimBatchNormalization in `model` (no recompile needed)."""
    value = _check_l1(value, "value")
    layers = slim_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no SlimBatchNormalization layer; "
                         "convert it with slimmable(model) first.")
    for layer in layers.values():
        layer.l1 = value
    return value


def sparsity_penalty(model):
    """Current λ·Σ|γ| summed over every SlimBatchNormalization, as a float."""
    return float(sum(float(l.penalty()) for l in slim_layers(model).values()))


class SparsityPenalty(keras.callbacks.Callback):
    """Adds `sparsity_penalty` (λ·Σ|γ| over all SlimBN layers, at epoch end) to the
    epoch logs, hence to `history.history`."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sparsity_penalty"] = sparsity_penalty(self.model)


class L1Schedule(SparsityPenalty):
    """Sets λ at the start of every epoch; logs `l1` and `sparsity_penalty`.

    `schedule` is a float (constant λ) or a callable epoch -> λ (epoch from 0), e.g.

        L1Schedule(1e-4)                                          # constant
        L1Schedule(lambda e: 1e-4 * min(1.0, (e + 1) / 5))        # linear warm-up, 5 ep
        L1Schedule(lambda e: 1e-4 * 0.5 ** (e // 10))             # halve every 10 ep
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            _check_l1(schedule, "schedule")
        self.schedule = schedule
        self.current = None

    def _value(self, epoch):
        value = self.schedule(epoch) if callable(self.schedule) else self.schedule
        return _check_l1(value, f"schedule({epoch})")

    def on_epoch_begin(self, epoch, logs=None):
        self.current = set_l1(self.model, self._value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["l1"] = self.current


# --- conversion ----------------------------------------------------------------------------
def _template_entry(layer):
    """class_name / module / registered_name keys of a layer's serialized form."""
    entry = keras.layers.serialize(layer)
    return {k: entry[k] for k in ("class_name", "module", "registered_name") if k in entry}


def _edit_entries(config, edit):
    """Call edit(entry) on every layer entry, nested models included."""
    for entry in config.get("layers", []):
        inner = entry.get("config")
        if isinstance(inner, dict) and "layers" in inner:
            _edit_entries(inner, edit)
        else:
            edit(entry)


def _copy_weights(src_model, dst_model):
    for path, src in _walk(src_model):
        dst = dst_model
        for part in path.split("/"):
            dst = dst.get_layer(part)
        src_w, dst_w = bn_weights(src), bn_weights(dst)
        if len(src_w) != len(dst_w):
            raise GraphError(f"layer {path!r}: {len(src_w)} weights cannot be copied onto "
                             f"{len(dst_w)}.")
        for s, d in zip(src_w, dst_w):
            d.assign(np.asarray(s))


def slimmable(model, l1=1e-4, on_no_scale="warn"):
    """A copy of `model` where every BatchNormalization is a SlimBatchNormalization with
    the same weights (same outputs) and penalty `l1`. The input model is not changed.

    A BN with scale=False has no γ to penalise: it stays a plain BN, with a warning
    (on_no_scale="warn") or a ValueError (on_no_scale="error").
    """
    _check_model(model)
    l1 = _check_l1(l1)
    if on_no_scale not in ("warn", "error"):
        raise ValueError(f"on_no_scale must be 'warn' or 'error', got {on_no_scale!r}.")
    bns = [(p, l) for p, l in _walk(model) if _is_bn(l)]
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
    template = _template_entry(SlimBatchNormalization(l1=l1))

    def edit(entry):
        cfg = entry.get("config", {})
        if entry.get("class_name") == "BatchNormalization" and cfg.get("scale", True):
            entry.update(copy.deepcopy(template))
            cfg["l1"] = l1

    config = copy.deepcopy(model.get_config())
    _edit_entries(config, edit)
    new = compat.model_from_config(model, config, "converting")
    _copy_weights(model, new)
    return new


def strip(model):
    """A copy of `model` with every SlimBatchNormalization back to a plain
    BatchNormalization (same weights, same outputs), for deployment/pruning."""
    _check_model(model)
    if not slim_layers(model):
        raise ValueError(f"model {model.name!r} has no SlimBatchNormalization layer.")
    template = _template_entry(keras.layers.BatchNormalization())
    slim_names = {_template_entry(SlimBatchNormalization())["class_name"],
                  "SlimBatchNormalization"}

    def edit(entry):
        if entry.get("class_name") in slim_names:
            entry.update(copy.deepcopy(template))
            entry["config"].pop("l1", None)

    config = copy.deepcopy(model.get_config())
    _edit_entries(config, edit)
    new = compat.model_from_config(model, config, "converting")
    _copy_weights(model, new)
    return new


# --- scores, plans, summaries --------------------------------------------------------------
def gamma_scores(model):
    """{layer path: |γ|} for every BatchNormalization (slim or not) that has a γ."""
    compat.ensure_model(model)
    scores = {}
    for path, layer in _walk(model):
        if _is_bn(layer) and layer.scale:
            gamma = np.abs(np.asarray(layer.gamma, dtype=np.float64))
            if not np.isfinite(gamma).all():
                bad = "NaN" if np.isnan(gamma).any() else "inf"
                raise ValueError(f"γ of layer {path!r} became {bad} during training; lower "
                                 "the learning rate or λ and retrain.")
            scores[path] = gamma
    if not scores:
        raise ValueError(f"model {model.name!r} has no BatchNormalization layer with a γ.")
    return scores


def gamma_plan(model, ratio, scope="global", **plan_kwargs):
    """ChannelPlan removing the `ratio` share of channels with the smallest |γ|
    (scope="global": one threshold over all layers, as in the paper)."""
    _check_ratio(ratio)
    meta = dict(plan_kwargs.pop("meta", None) or {}, criterion="bn_gamma")
    return plan_from_scores(model, gamma_scores(model), ratio, scope=scope, meta=meta,
                            **plan_kwargs)


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


class GammaLogger(keras.callbacks.Callback):
    """Each epoch: tf.summary histograms of |γ| per layer and overall plus the share
    below `threshold` (if log_dir is given), logs `gamma_sparsity`, prints one line."""

    def __init__(self, log_dir=None, threshold=1e-2, verbose=1):
        super().__init__()
        self.threshold = _check_l1(threshold, "threshold")
        self.log_dir, self.verbose = log_dir, verbose
        self._writer = tf.summary.create_file_writer(log_dir) if log_dir else None

    @staticmethod
    def _histogram(tag, values, step):
        tf.summary.histogram(tag, values, step=step)

    def on_epoch_end(self, epoch, logs=None):
        summary = sparsity_summary(self.model, self.threshold)
        share = summary["overall"]["share"]
        if self._writer is not None:
            scores = gamma_scores(self.model)
            with self._writer.as_default(step=epoch):
                for path, values in scores.items():
                    self._histogram(f"gamma/{path}", values, epoch)
                self._histogram("gamma/all", np.concatenate(list(scores.values())), epoch)
                tf.summary.write("gamma/share_below_threshold", share, step=epoch)
            self._writer.flush()
        if logs is not None:
            logs["gamma_sparsity"] = share
        if self.verbose:
            print(f"epoch {epoch + 1}: {100 * share:.1f}% of |γ| < {self.threshold:g} "
                  f"({summary['overall']['below']}/{summary['overall']['channels']})")
