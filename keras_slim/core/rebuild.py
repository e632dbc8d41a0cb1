"""Plan + model -> a physically smaller model (rebuild) or a same-size one with the
removed channels zeroed (mask).

Both go through the model's config: the widths of channel-creating layers (and the few
shapes written in configs) are edited, `from_config` replays the graph in either Keras
flavour, and the weights are sliced (or zeroed) by the same per-layer axis rules.

Bias compensation: a removed channel may still emit a constant — with BN γ = 0 it emits
act(β). That constant, carried through pooling, Add, Flatten..., is folded into each
consumer's bias (or into the moving mean of the BN after a bias-free conv). Exact for
Dense and 1×1 / 'valid' convs; at the zero-padded borders of k×k 'same' convs the
folded bias is slightly off, and the report says which consumers are approximate.

Data-aware compensation (calibration_data=...): instead of assuming γ = 0, each removed
channel is replaced by its mean over the calibration batches at the tensor its consumer
reads (after its activation) — mean replacement — and that mean is folded the same way.
Exact where the channel is constant over the batches (and the consumer has no 'same'
border); the report gives each consumer's deviation of the per-example outputs.
"""
import copy
from dataclasses import dataclass, field

import numpy as np

from keras_slim import compat
from keras_slim.core import rules
from keras_slim.core.calibration import channel_stats
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import ChannelPlan
from keras_slim.core.walk import config_entry_at, layer_at


@dataclass
class Compensation:
    layer: str
    channels: int          # removed input channels whose constant was folded
    target: str            # "bias", "bn_moving_mean:<layer>" or "new_bias"
    exact: bool
    # with calibration data: over the removed channels, the mean / max of each channel's
    # mean |x − calibration mean|, and the mean std (per-example outputs vs the mean)
    deviation: dict = None


@dataclass
class RebuildReport:
    compensations: list = field(default_factory=list)

    @property
    def exact(self):
        return all(c.exact for c in self.compensations)

    def deviation(self):
        """Calibration deviation over all consumers: {"mean_abs", "max_abs", "std"}
        (None without calibration data)."""
        devs = [c.deviation for c in self.compensations if c.deviation]
        if not devs:
            return None
        weights = np.array([c.channels for c in self.compensations if c.deviation], float)
        return {"mean_abs": float(np.average([d["mean_abs"] for d in devs], weights=weights)),
                "max_abs": float(max(d["max_abs"] for d in devs)),
                "std": float(np.average([d["std"] for d in devs], weights=weights))}


class _Masks:
    """Keep masks of every tensor's channels under one plan."""

    def __init__(self, graph, plan):
        if not isinstance(plan, ChannelPlan):
            raise TypeError(f"plan must be a ChannelPlan, got {type(plan).__name__}.")
        self.graph = graph
        self.removed = plan.removed_roots(graph)
        self._cache = {}

    def of(self, key):
        if key not in self._cache:
            roots = self.graph.roots(self.graph.ids[key])
            self._cache[key] = ~np.isin(roots, list(self.removed))
        return self._cache[key]

    def for_op(self, op):
        return _OpMasks(self, op)


class _OpMasks:
    def __init__(self, masks, op):
        self.masks, self.op = masks, op

    def in_mask(self, i=0):
        return self.masks.of(self.op.inputs[i])

    def out_mask(self, i=0):
        return self.masks.of(self.op.outputs[i])

    def out_kept(self, i=0):
        return int(self.out_mask(i).sum())

    def axis_mask(self, role):
        if role == rules.IN:
            return self.in_mask()
        if role == rules.OUT:
            return self.out_mask()
        return np.repeat(self.in_mask(), self.op.config.get("depth_multiplier", 1))


def _edit_weights(op, weights, masks, edit):
    """Apply `edit(array, axis, mask)` along every channel axis of every weight."""
    om = masks.for_op(op)
    original = len(compat.weights_of(op.layer))
    axes_list = list(op.rule.weight_axes(op)) + [{}] * (original - len(op.rule.weight_axes(op)))
    axes_list += [{0: rules.OUT}] * (len(weights) - original)  # bias added by compensation
    out = []
    for w, axes in zip(weights, axes_list):
        for axis, role in axes.items():
            w = edit(w, axis % w.ndim, om.axis_mask(role))
        out.append(w)
    return out


def _slice(w, axis, mask):
    return np.compress(mask, w, axis=axis)


def _zero(w, axis, mask):
    shape = [1] * w.ndim
    shape[axis] = len(mask)
    return w * mask.reshape(shape).astype(w.dtype)


def _constants(graph, gamma_tolerance=0.0):
    """Per tensor: per-channel constant value (NaN: not constant) and whether any
    border-altering layer lies upstream."""
    graph.gamma_tolerance = gamma_tolerance  # read by the BatchNorm rule
    values, approx = {}, {}
    for op in graph.ops:
        if op.is_input:
            for key in op.outputs:
                values[key] = np.full(graph.shapes[key][-1], np.nan)
                approx[key] = False
            continue
        outs = op.rule.constants(op, [values[k] for k in op.inputs])
        border = any(approx[k] for k in op.inputs) or op.rule.alters_borders(op)
        for key, v in zip(op.outputs, outs):
            values[key], approx[key] = np.asarray(v, dtype=np.float64), border
    return values, approx


def _consumers(graph):
    return [op for op in graph.ops
            if op.rule is not None and op.rule.consumer and op.config.get("groups", 1) == 1]


def _calibrated(graph, masks, data):
    """Per consumer input tensor with removed channels: its calibration means (removed
    channels only, NaN elsewhere) and ChannelStats."""
    keys = {op.inputs[0] for op in _consumers(graph) if not masks.of(op.inputs[0]).all()}
    stats = channel_stats(graph, data, sorted(keys))
    values = {k: np.where(masks.of(k), np.nan, s.mean) for k, s in stats.items()}
    return values, stats


def _deviation(stats, removed):
    return {"mean_abs": float(stats.mean_abs_dev[removed].mean()),
            "max_abs": float(stats.max_abs_dev[removed].max()),
            "std": float(stats.std[removed].mean())}


_CONSTANT_ATOL = 1e-6  # a calibrated channel this close to its mean counts as constant


def _compensate(graph, masks, new_weights, configs, report, gamma_tolerance,
                calibration_data=None):
    """Fold the constants (or calibration means) of removed channels into consumers,
    updating new_weights (full-size, per op path) and configs (entries to edit) in
    place."""
    if calibration_data is None:
        values, approx = _constants(graph, gamma_tolerance)
        stats = {}
    else:
        values, stats = _calibrated(graph, masks, calibration_data)
        approx = {}
    consumers = {}
    for op in graph.ops:
        for key in op.inputs:
            consumers.setdefault(key, []).append(op)
    for op in _consumers(graph):
        key = op.inputs[0]
        if key not in values:
            continue
        v = values[key]
        use = ~masks.of(key) & np.isfinite(v) & (v != 0)
        if not use.any():
            continue
        deviation = _deviation(stats[key], ~masks.of(key)) if key in stats else None
        delta = op.rule.response(op, new_weights[op.path], np.where(use, v, 0.0))
        if delta is None:  # e.g. a strided transposed conv: say it was dropped
            report.compensations.append(Compensation(op.path, int(use.sum()), "not folded",
                                                     False, deviation))
            continue
        kernel = new_weights[op.path][0]
        spatial = kernel.shape[:-2]
        constant = (not approx[key]) if deviation is None else \
            deviation["max_abs"] <= _CONSTANT_ATOL * max(1.0, float(np.abs(v[use]).max()))
        exact = constant and (
            all(k == 1 for k in spatial) or op.config.get("padding", "valid") == "valid")
        nexts = consumers.get(op.outputs[0], [])
        bias_index = op.rule.bias_index
        if op.config.get("use_bias", True):
            new_weights[op.path][bias_index] = new_weights[op.path][bias_index] + delta
            target = "bias"
        elif len(nexts) == 1 and isinstance(nexts[0].rule, rules.BatchNorm):
            bn = nexts[0]
            index = rules.bn_weight_index(bn.config, "moving_mean")
            new_weights[bn.path][index] = new_weights[bn.path][index] - delta
            target = f"bn_moving_mean:{bn.path}"
        else:
            configs[op.path]["config"]["use_bias"] = True
            new_weights[op.path] = new_weights[op.path][:bias_index] + [
                delta.astype(kernel.dtype)]
            target = "new_bias"
        report.compensations.append(Compensation(op.path, int(use.sum()), target, exact,
                                                 deviation))


def _graph_of(model, graph):
    """The model's ChannelGraph: the one handed along, or a new analysis."""
    if graph is None:
        return ChannelGraph(model)
    if not isinstance(graph, ChannelGraph) or graph.model is not model:
        raise ValueError("graph must be the ChannelGraph of this very model "
                         f"({model.name!r}). Received: {graph!r}")
    return graph


def _build(model, plan, edit, resize, compensate, gamma_tolerance, graph,
           calibration_data=None, verbose=0):
    graph = _graph_of(model, graph)
    masks = _Masks(graph, plan)
    config = copy.deepcopy(compat.graph_config(model))
    entries = {op.path: config_entry_at(config, op.names) for op in graph.ops
               if not op.is_input}
    weights = {op.path: compat.weights_of(op.layer) for op in graph.ops if not op.is_input}
    report = RebuildReport()
    if compensate:
        _compensate(graph, masks, weights, entries, report, gamma_tolerance,
                    calibration_data)
    elif calibration_data is not None:
        raise ValueError("calibration_data is for compensation; it cannot be combined with "
                         "compensate=False.")
    if resize:
        for op in graph.ops:
            if op.path in entries:
                op.rule.edit_entry(op, entries[op.path], masks.for_op(op))
        for names, key in graph.nested_inputs.items():
            cfg = config_entry_at(config, names)["config"]
            shape_key = compat.input_layer_shape_key(cfg)
            cfg[shape_key] = list(cfg[shape_key])[:-1] + [int(masks.of(key).sum())]
    new = compat.model_from_config(model, config)
    weighted = [op for op in graph.ops if not op.is_input and weights[op.path]]
    # Slicing and setting weights is the long part on big models: show it when asked.
    progress = compat.keras.utils.Progbar(len(weighted), unit_name="layer") \
        if verbose and weighted else None
    for n, op in enumerate(weighted, 1):
        layer_at(new, op.names).set_weights(_edit_weights(op, weights[op.path], masks, edit))
        if progress is not None:
            progress.update(n)
    return new, report


def rebuild(model, plan, compensate=True, return_report=False, gamma_tolerance=0.0,
            graph=None, calibration_data=None, verbose=0):
    """A new model with only the plan's channels, sliced weights, the same layer names.

    The input model is not changed. With compensate=True (default) the constant output
    of removed channels (BN γ = 0 emits act(β)) is folded into the consumers.
    gamma_tolerance > 0 also treats removed channels with |γ| at most that as emitting
    act(β) — an approximation (E[γ·x̂ + β] = β before the activation) for Network
    Slimming, where sparsity training leaves γ small but rarely exactly 0.
    graph: the model's ChannelGraph if the caller has one (saves a second analysis).
    calibration_data: input batches (array, list of arrays, or tf.data.Dataset of x or
    (x, y)); each removed channel is then replaced by its mean over them, measured at
    the tensor its consumer reads, instead of assuming γ = 0 (gamma_tolerance unused).
    The report's compensations carry the per-example deviation from those means.
    verbose=1 shows a progress bar over the layers whose weights are sliced.
    """
    new, report = _build(model, plan, _slice, True, compensate, gamma_tolerance, graph,
                         calibration_data, verbose)
    return (new, report) if return_report else new


def mask(model, plan, compensate=True, return_report=False, gamma_tolerance=0.0,
         graph=None, calibration_data=None):
    """A same-size copy whose removed channels are zeroed (weights in and out, BN
    γ = β = 0); computes what rebuild(model, plan) computes, at full size (the same
    calibration_data gives the same compensation)."""
    new, report = _build(model, plan, _zero, False, compensate, gamma_tolerance, graph,
                         calibration_data)
    return (new, report) if return_report else new
