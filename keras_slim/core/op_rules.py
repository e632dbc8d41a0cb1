"""Rules for operation nodes: Keras 3 ops applied to symbolic tensors (`x + 3.0`,
`x * gate`, `keras.ops.pad`, `keras.ops.mean` …) and tf_keras op layers (`TFOpLambda`).

They share the registry in `rules.py`, keyed apart from layers: a Keras 3 op as
"ops.<OpClass>" (so the op "ops.Add" is not the layer "Add"), a tf_keras op layer as
"tf.<function>" ("tf.math.multiply"). Element-wise ops couple their tensor inputs like
`Merge` and carry per-channel constants (sliced on rebuild); spatial pads, resizes and
spatial reductions are per-channel; an op that touches the channel axis is a barrier,
with a warning that names it — never a guess.
"""
import warnings

import numpy as np

from keras_slim import compat
from keras_slim.core.rules import Rule

OP_PREFIX, TF_OP_PREFIX = "ops.", "tf."


def _fill(value, arrays):
    """The recorded call with input tensors replaced by arrays."""
    if isinstance(value, compat.TensorArg):
        return arrays[value.index]
    if isinstance(value, list):
        return [_fill(v, arrays) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, arrays) for k, v in value.items()}
    return value


def _axes(value, rank):
    if value is None:
        return None
    return sorted({int(a) % rank for a in np.atleast_1d(value)})


class OpRule(Rule):
    """An operation node: no weights; its recorded call can be replayed on arrays."""

    def weight_axes(self, op):
        return []

    def param(self, op, *names, default=None):
        """A parameter from the op's config (Keras 3) or its call kwargs (tf_keras)."""
        _, kwargs = compat.call_arguments(op.entry)
        for name in names:
            for source in (op.config, kwargs):
                if name in source:
                    return source[name]
        return default

    def replay(self, op, arrays):
        args, kwargs = compat.call_arguments(op.entry)
        return np.asarray(op.layer(*_fill(args, arrays), **_fill(kwargs, arrays)))

    def replay_constants(self, op, values, spatial):
        """Per-channel constant output: the call replayed on inputs that hold each channel's
        constant (at full static spatial size if `spatial`, else broadcast 1×…×1×C)."""
        n = op.out_channels(0)
        finite = np.ones(n, bool)
        arrays = []
        for i, v in enumerate(values):
            shape = (1,) + tuple(op.in_shape(i)[1:-1]) if spatial else (1,) * (op.rank(i) - 1)
            if None in shape:
                return [np.full(n, np.nan)]
            arrays.append(np.broadcast_to(np.where(np.isfinite(v), v, 0.0), shape + (len(v),))
                          .astype(np.float32))
            finite &= np.broadcast_to(np.isfinite(v), (n,)) if len(v) in (1, n) else False
        try:
            out = self.replay(op, arrays)
        except Exception:  # a call that needs more than per-channel values: not constant
            return [np.full(n, np.nan)]
        if out.size % n:
            return [np.full(n, np.nan)]
        rows = out.reshape(-1, n).astype(np.float64)
        same = np.all(np.isclose(rows, rows[:1]), axis=0)
        return [np.where(finite & same, rows[0], np.nan)]

    def channel_barrier(self, op, in_ids, graph, why):
        warnings.warn(f"operation {op.path!r} ({op.class_name}) {why}: its input and output "
                      "channels are kept unpruned.", stacklevel=4)
        return graph.barrier(op, in_ids)


class Elementwise(OpRule):
    """x + 3, relu6(x) / 6, x * gate (B,1,1,C), clip …: channel c of every tensor input
    is one channel (coupled, width 1 broadcasts); constants of shape (…, C) follow it."""

    def propagate(self, op, in_ids, graph):
        n = op.out_channels(0)
        coupled = [ids for ids in in_ids if len(ids) == n]
        if not coupled or any(len(ids) not in (1, n) for ids in in_ids):
            return self.channel_barrier(op, in_ids, graph, "widens its channels by a constant")
        for ids in coupled[1:]:
            graph.union(coupled[0], ids)
        return [coupled[0]]

    def constants(self, op, values):
        return self.replay_constants(op, values, spatial=False)

    def edit_entry(self, op, entry, masks):
        keep = masks.out_mask(0)
        if len(keep) > 1:  # per-channel constants lose the removed channels
            compat.map_call_constants(entry, lambda a: np.compress(keep, a, axis=-1)
                                      if a.ndim and a.shape[-1] == len(keep) else None)
        return entry


class Reduce(OpRule):
    """mean / max / min / sum over spatial axes (keepdims or not): per-channel. Over the
    channel or batch axis, or over all axes: a barrier."""

    def propagate(self, op, in_ids, graph):
        axes = _axes(self.param(op, "axis"), op.rank(0))
        if axes is None or op.rank(0) - 1 in axes or 0 in axes:
            return self.channel_barrier(op, in_ids, graph,
                                        f"reduces over the channel or batch axis ({axes})")
        return [in_ids[0]]

    def constants(self, op, values):
        return self.replay_constants(op, values, spatial=True)


class SpatialPad(OpRule):
    """keras.ops.pad / tf.pad of spatial axes: per-channel; padding the channel (or
    batch) axis adds channels: a barrier."""

    def propagate(self, op, in_ids, graph):
        widths = self.param(op, "pad_width", "paddings")
        widths = np.asarray(widths if widths is not None else [[1, 1]])
        if widths.shape != (op.rank(0), 2) or widths[0].any() or widths[-1].any():
            return self.channel_barrier(op, in_ids, graph,
                                        f"pads the channel or batch axis ({widths.tolist()})")
        return [in_ids[0]]

    def constants(self, op, values):
        return [values[0]]  # inside; the border holds the pad value (alters_borders)

    def alters_borders(self, op):
        return True


class SpatialMap(OpRule):
    """Resizes: output channel c is input channel c; a constant stays that constant."""

    def propagate(self, op, in_ids, graph):
        return [in_ids[0]]

    def constants(self, op, values):
        return [values[0]]


class ChannelOp(OpRule):
    """Transpose, reshape, matmul, concatenate, slicing, softmax …: may move or mix
    channels, so its channels stay (with a warning naming it)."""

    def propagate(self, op, in_ids, graph):
        return self.channel_barrier(op, in_ids, graph, "may act on the channel axis")


_ELEMENTWISE = [
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power",
    "Mod", "FloorDivide", "Clip", "Absolute", "Abs", "Negative", "Square", "Sqrt", "Rsqrt",
    "Reciprocal", "Exp", "Expm1", "Log", "Log1p", "Tanh", "Sin", "Cos", "Sign", "Floor",
    "Ceil", "Round", "Erf", "Cast", "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu",
    "Silu", "Gelu", "Elu", "Selu", "Softplus", "Softsign", "LeakyRelu",
]
_REDUCE = ["Mean", "Max", "Min", "Sum", "Prod", "Amax", "Amin"]
_CHANNEL = [
    "Transpose", "Reshape", "Matmul", "Concatenate", "GetItem", "Einsum", "Tensordot",
    "Squeeze", "ExpandDims", "Swapaxes", "Moveaxis", "Softmax", "LogSoftmax", "Argmax",
    "Argmin", "Stack", "Split", "Take", "Tile", "Repeat", "Slice", "Dot", "Ravel", "Flip",
    "Roll", "Sort", "Cumsum", "Norm", "Logsumexp", "Std", "Var",
]
_TF_ELEMENTWISE = [
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.divide", "math.maximum", "math.minimum", "math.pow", "math.negative", "math.abs",
    "math.square", "math.sqrt", "math.rsqrt", "math.reciprocal", "math.exp", "math.log",
    "math.tanh", "math.sigmoid", "math.sign", "math.floor", "math.erf", "math.softplus",
    "nn.relu", "nn.relu6", "nn.silu", "nn.gelu", "nn.elu", "nn.selu", "nn.leaky_relu",
    "clip_by_value", "cast",
]
_TF_REDUCE = ["math.reduce_mean", "math.reduce_max", "math.reduce_min", "math.reduce_sum",
              "math.reduce_prod"]
_TF_CHANNEL = [
    "reshape", "transpose", "compat.v1.transpose", "linalg.matmul", "concat",
    "__operators__.getitem", "einsum", "nn.softmax", "squeeze", "compat.v1.squeeze",
    "expand_dims", "gather", "tile", "split", "stack", "math.argmax", "linalg.norm",
]

OP_RULES = {OP_PREFIX + name: Elementwise() for name in _ELEMENTWISE}
OP_RULES.update({OP_PREFIX + name: Reduce() for name in _REDUCE})
OP_RULES.update({OP_PREFIX + name: ChannelOp() for name in _CHANNEL})
OP_RULES.update({OP_PREFIX + "Pad": SpatialPad(), OP_PREFIX + "Resize": SpatialMap()})
OP_RULES.update({TF_OP_PREFIX + name: Elementwise() for name in _TF_ELEMENTWISE})
OP_RULES.update({TF_OP_PREFIX + name: Reduce() for name in _TF_REDUCE})
OP_RULES.update({TF_OP_PREFIX + name: ChannelOp() for name in _TF_CHANNEL})
OP_RULES.update({TF_OP_PREFIX + "compat.v1.pad": SpatialPad(),
                 TF_OP_PREFIX + "pad": SpatialPad(),
                 TF_OP_PREFIX + "image.resize": SpatialMap()})
