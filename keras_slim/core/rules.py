"""One rule per layer type: how its channels flow and how its weights are sliced.

A rule answers, for one layer call:
  * `propagate`: the channel ids of its outputs from those of its inputs. A layer that
    creates channels (conv, dense) asks for fresh ids; a per-channel layer (BN, ReLU,
    pooling) passes them on; an element-wise merge (Add, SE Multiply) couples them.
  * `weight_axes`: for each weight, which axis follows the input ("in") or output ("out")
    channel mask — the same description serves slicing (rebuild) and zeroing (mask).
  * `new_config`: the config change a narrower layer needs (`filters`, `units`, shapes).
  * `consumer`: whether it sums over input channels (a place to fold constants into).

A new layer type is one entry in RULES. A type with no entry becomes a barrier (its
channels stay, with a warning), which is always safe; Lambda is refused outright.
Operation nodes (x + 3, keras.ops.pad, tf_keras TFOpLambda) have their rules in
op_rules.py, merged into RULES under "ops.<OpClass>" / "tf.<function>" (see kind_of).
"""
import numpy as np

from keras_slim import compat
from keras_slim.compat import GraphError

IN, OUT, MID = "in", "out", "mid"  # MID: depthwise output of a separable conv


class Rule:
    """How one layer kind's channels flow. Traits other modules ask instead of testing
    class names: `gating` ("source": DCE can gate its output channels; "bn"/"act": a
    gate may move behind it), `compact` (keras_slim.dce.compact: "conv", "depthwise",
    "bn", "zeropad": has a compact-execution form; "pass": a per-channel layer a compact
    tensor passes unchanged; "merge": element-wise between compact tensors)."""
    consumer = False       # sums over input channels: constants fold into its bias
    creates_channels = False
    gating = None
    compact = None
    width_follows_input = False  # depthwise: output channels are the input's

    def __init__(self, **traits):
        for name, value in traits.items():
            if not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} has no trait {name!r}.")
            setattr(self, name, value)

    def macs(self, op, cin=None, cout=None):
        """Multiply-accumulates of one call (0 for layers whose work is negligible), at
        its own widths or at `cin` input / `cout` output channels (a candidate plan)."""
        return 0

    def width_config(self, op, cout):
        """The layer's config at `cout` output channels (latency probes); None if the
        layer has no width of its own to set (its output follows its input)."""
        return None

    def runs_alone(self, op):
        """True for a layer without MACs that a runtime still runs as an op of its own,
        whose time a latency table measures (an activation TFLite cannot fuse into the
        convolution before it: hard-swish, swish, sigmoid...)."""
        return False

    def filter_importance(self, op):
        """L1 norm of each output channel's filter (channel-creating layers), else None."""
        return None

    def propagate(self, op, in_ids, graph):
        raise NotImplementedError

    def weight_axes(self, op):
        return []

    def new_config(self, op, config, masks):
        return config

    def edit_entry(self, op, entry, masks):
        """Edit the op's config entry for a narrower graph (`new_config` of its "config";
        operation rules also slice per-channel constants in its recorded call)."""
        self.new_config(op, entry["config"], masks)
        return entry

    def constants(self, op, values):
        """Per-channel constant value of each output given the inputs' (NaN: not a
        constant). Used to fold removed channels' constant output into consumers."""
        return [np.full(op.out_channels(i), np.nan) for i in range(len(op.outputs))]

    def alters_borders(self, op):
        """True where a constant channel stops being constant near the borders."""
        return False

    def keeps_zero(self, op, zeros):
        """True if a channel that is exactly zero in the inputs flagged by `zeros` (one
        bool per input) is exactly zero in the output too, whatever the weights (DCE: a
        switched-off channel stays off)."""
        return False


class PerChannel(Rule):
    """Output channel c is input channel c: activations, BN, pooling, padding, dropout."""
    width_follows_input = True

    def propagate(self, op, in_ids, graph):
        return [in_ids[0]]

    def keeps_zero(self, op, zeros):
        return zeros[0]  # pooling, padding, dropout, cropping, upsampling

    def weight_axes(self, op):
        # BN / Normalization / PReLU weights all index the channel on their last axis.
        return [{-1: OUT} if len(w.shape) and w.shape[-1] == op.in_channels(0) else {}
                for w in op.layer.weights]

    def constants(self, op, values):
        return [values[0]]  # pooling, dropout, cropping: a constant stays that constant


class Padding(PerChannel):
    def alters_borders(self, op):
        return True


class ValueMap(PerChannel):
    """Activations and rescaling: the constant goes through the layer itself."""

    def constants(self, op, values):
        v = values[0]
        x = np.where(np.isfinite(v), v, 0.0).reshape((1,) * (op.rank(0) - 1) + (-1,))
        try:
            out = np.asarray(op.layer(x.astype(np.float32), training=False))
        except Exception:  # e.g. PReLU with per-position alpha: not a per-channel map
            return [np.full_like(v, np.nan)]
        rows = out.reshape(-1, len(v))
        same = np.all(np.isclose(rows, rows[:1]), axis=0)
        return [np.where(np.isfinite(v) & same, rows[0], np.nan)]

    def keeps_zero(self, op, zeros):
        out = self.constants(op, [np.zeros(op.in_channels(0))])[0]  # f(0) == 0?
        return zeros[0] and bool(np.all(out == 0))


# TFLite fuses these into the op before them (convolution, dense, add): no op of their own.
_FUSED_ACTIVATIONS = (None, "linear", "relu", "relu6")


class Activation(ValueMap):
    """An activation layer; one TFLite cannot fuse runs alone (see Rule.runs_alone)."""

    def runs_alone(self, op):
        config = op.config
        if op.class_name == "Activation":
            return config.get("activation") not in _FUSED_ACTIVATIONS
        if op.class_name == "ReLU":
            return not (config.get("max_value") in (None, 6.0)
                        and not config.get("negative_slope") and not config.get("threshold"))
        return True  # LeakyReLU, ELU, PReLU, ThresholdedReLU: element-wise ops of their own


class BatchNorm(PerChannel):
    def propagate(self, op, in_ids, graph):
        axis = op.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, op.rank(0) - 1):
            raise GraphError(f"layer {op.path!r}: BatchNormalization over axis {axis} is not "
                             "the channel axis (channels_last models only).")
        return [in_ids[0]]

    def constants(self, op, values):
        w = dict(zip(_bn_weight_names(op.config), op.layer.get_weights()))  # extras last
        n = len(values[0])
        gamma, beta = w.get("gamma", np.ones(n)), w.get("beta", np.zeros(n))
        scale = gamma / np.sqrt(w["moving_variance"] + op.config.get("epsilon", 1e-3))
        # gamma == 0 makes the output beta whatever comes in: Network Slimming's case.
        # With a tolerance (rebuild's gamma_tolerance), |γ| that small counts as 0.
        tolerance = getattr(op.graph, "gamma_tolerance", 0.0)
        constant = np.abs(gamma) <= tolerance
        return [np.where(constant, beta, scale * (values[0] - w["moving_mean"]) + beta)]

    def keeps_zero(self, op, zeros):
        return False  # β and the batch mean shift a zero channel


def _widths(op, cin, cout):
    return (op.in_channels(0) if cin is None else cin,
            op.out_channels(0) if cout is None else cout)


def _activate(op, values):
    """A layer's own `activation` applied to per-channel constants (NaN stays NaN)."""
    if op.config.get("activation", "linear") in ("linear", None):
        return values
    finite = np.isfinite(values)
    out = np.asarray(op.layer.activation(np.where(finite, values, 0.0).astype(np.float32)))
    return np.where(finite, out, np.nan)


def _bn_weight_names(config):
    return ((["gamma"] if config.get("scale", True) else [])
            + (["beta"] if config.get("center", True) else [])
            + ["moving_mean", "moving_variance"])


class Source(Rule):
    """Conv / Dense: each output channel is new; weights slice on both axes."""
    creates_channels = True
    consumer = True
    width_key = "filters"

    def propagate(self, op, in_ids, graph):
        if op.config.get("groups", 1) != 1:
            return graph.barrier(op, in_ids)
        if op.config.get("data_format", "channels_last") != "channels_last":
            raise GraphError(f"layer {op.path!r}: only channels_last is supported.")
        return [graph.fresh_ids(op, op.out_channels(0))]

    def weight_axes(self, op):
        if op.config.get("groups", 1) != 1:
            return []  # a barrier: its channels all stay
        kernel = {len(op.layer.weights[0].shape) - 2: IN, -1: OUT}
        return [kernel] + [{0: OUT}] * (len(op.layer.weights) - 1)

    def new_config(self, op, config, masks):
        config[self.width_key] = int(masks.out_kept(0))
        return config

    bias_index = 1  # position of the bias among the layer's weights
    kernel_index = 0  # the weight whose L1 norm ranks filters

    def macs(self, op, cin=None, cout=None):
        cin, cout = _widths(op, cin, cout)
        kernel = int(np.prod(op.config.get("kernel_size", 1)))
        out_spatial = int(np.prod(op.out_shape(0)[1:-1]))
        return out_spatial * kernel * cin // op.config.get("groups", 1) * cout

    def width_config(self, op, cout):
        return dict(op.config, **{self.width_key: int(cout)})

    def out_axis(self, kernel):
        return kernel.ndim - 1

    def filter_importance(self, op):
        kernel = np.abs(op.layer.get_weights()[self.kernel_index])
        out_axis = self.out_axis(kernel)
        return kernel.sum(axis=tuple(a for a in range(kernel.ndim) if a != out_axis))

    def response(self, op, weights, values):
        """Interior output of the layer to constant inputs (bias compensation), or None
        if it has no single interior value."""
        kernel = weights[0]
        return np.tensordot(values, kernel.sum(axis=tuple(range(kernel.ndim - 2))), axes=1)


class Dense(Source):
    width_key = "units"


class ConvTranspose(Source):
    def macs(self, op, cin=None, cout=None):
        cin, cout = _widths(op, cin, cout)
        in_spatial = int(np.prod(op.in_shape(0)[1:-1]))
        return in_spatial * int(np.prod(op.config["kernel_size"])) * cin * cout

    def out_axis(self, kernel):
        return kernel.ndim - 2

    def response(self, op, weights, values):
        return None  # with strides, how many taps reach an output depends on its position

    def weight_axes(self, op):
        return [{-2: OUT, -1: IN}] + [{0: OUT}] * (len(op.layer.weights) - 1)


class Depthwise(Rule):
    """Output channel c*m+k comes from input channel c: the channel keeps its identity."""
    width_follows_input = True

    def macs(self, op, cin=None, cout=None):
        cout = _widths(op, cin, cout)[1]
        return (int(np.prod(op.out_shape(0)[1:-1])) * int(np.prod(op.config["kernel_size"]))
                * cout)

    def width_config(self, op, cout):
        return dict(op.config)  # its width follows the input's

    def propagate(self, op, in_ids, graph):
        return [np.repeat(in_ids[0], op.config.get("depth_multiplier", 1))]

    def weight_axes(self, op):
        return [{len(op.layer.weights[0].shape) - 2: IN}] + [{0: OUT}] * (
            len(op.layer.weights) - 1)

    def constants(self, op, values):
        weights = op.layer.get_weights()
        kernel = weights[0]  # (..., C, m): a constant input gives constant * sum of taps
        taps = kernel.sum(axis=tuple(range(kernel.ndim - 2))).reshape(-1)
        out = np.repeat(values[0], kernel.shape[-1]) * taps
        out = out + weights[1] if len(weights) > 1 else out
        return [_activate(op, out)]

    def alters_borders(self, op):
        kernel = op.config.get("kernel_size", 1)
        kernel = kernel if isinstance(kernel, (list, tuple)) else [kernel]
        return op.config.get("padding", "valid") == "same" and any(k > 1 for k in kernel)

    def keeps_zero(self, op, zeros):
        if op.config.get("use_bias", True):
            return False
        return zeros[0] and bool(np.all(_activate(op, np.zeros(1)) == 0))


class Separable(Source):
    """Depthwise (per input channel) then a pointwise conv that creates channels."""
    bias_index = 2
    kernel_index = 1  # the pointwise kernel creates the output channels

    def macs(self, op, cin=None, cout=None):
        cin, cout = _widths(op, cin, cout)
        mid = cin * op.config.get("depth_multiplier", 1)
        kernel = int(np.prod(op.config["kernel_size"]))
        return int(np.prod(op.out_shape(0)[1:-1])) * (kernel * mid + mid * cout)

    def response(self, op, weights, values):
        depthwise, pointwise = weights[0], weights[1]
        per_tap = depthwise.sum(axis=tuple(range(depthwise.ndim - 2)))  # (C, m)
        mid = (values[:, None] * per_tap).reshape(-1)                     # (C*m,)
        return mid @ pointwise.reshape(-1, pointwise.shape[-1])

    def weight_axes(self, op):
        return [{-2: IN}, {-2: MID, -1: OUT}] + [{0: OUT}] * (len(op.layer.weights) - 2)


class Merge(Rule):
    """Element-wise merge: channel c of every input is one channel (coupled)."""

    def propagate(self, op, in_ids, graph):
        widths = {len(ids) for ids in in_ids} - {1}  # width 1 broadcasts, couples nothing
        if len(widths) > 1:
            raise GraphError(f"layer {op.path!r}: inputs have {sorted(widths)} channels.")
        coupled = [ids for ids in in_ids if len(ids) > 1 or not widths]
        for ids in coupled[1:]:
            graph.union(coupled[0], ids)
        return [coupled[0]]

    def constants(self, op, values):
        fn = _MERGE_FN.get(op.class_name)
        if fn is None:
            return super().constants(op, values)
        return [fn(np.broadcast_arrays(*values))]

    def keeps_zero(self, op, zeros):
        return _MERGE_ZERO.get(op.class_name, all)(zeros)


_MERGE_FN = {
    "Add": lambda v: np.sum(v, axis=0), "Subtract": lambda v: v[0] - v[1],
    "Multiply": lambda v: np.prod(v, axis=0), "Average": lambda v: np.mean(v, axis=0),
    "Maximum": lambda v: np.max(v, axis=0), "Minimum": lambda v: np.min(v, axis=0),
}
_MERGE_ZERO = {"Multiply": any}  # a product is zero if one factor is; the rest: all


class Concat(Rule):
    """Concatenation on the channel axis is an index map (offsets), not a coupling."""

    def propagate(self, op, in_ids, graph):
        axis = op.config.get("axis", -1)
        if axis in (-1, op.rank(0) - 1):
            return [np.concatenate(in_ids)]
        return Merge().propagate(op, in_ids, graph)

    def constants(self, op, values):
        if op.config.get("axis", -1) in (-1, op.rank(0) - 1):
            return [np.concatenate(values)]
        return super().constants(op, values)


class Reshape(Rule):
    """Keeps channel identity when each output channel is one input channel (SE
    Reshape((1,1,C)), Flatten); anything that mixes channels is a barrier."""

    def propagate(self, op, in_ids, graph):
        out = self.reindex(op, in_ids[0])
        return graph.barrier(op, in_ids) if out is None else [out]

    def constants(self, op, values):
        out = self.reindex(op, values[0])
        return super().constants(op, values) if out is None else [out]

    @staticmethod
    def reindex(op, per_channel):
        """Output channels as a function of input channels, or None if they mix."""
        in_shape, out_shape = op.in_shape(0), op.out_shape(0)
        if None in in_shape[1:] or None in out_shape[1:]:
            return None
        flat = np.broadcast_to(per_channel, tuple(in_shape[1:])).reshape(-1)
        if len(out_shape) == 2:
            return flat  # Flatten-like: every feature keeps its channel
        columns = flat.reshape(-1, out_shape[-1])
        same = (columns == columns[:1]) | (np.isnan(columns) & np.isnan(columns[:1])) \
            if columns.dtype.kind == "f" else columns == columns[:1]
        if same.all() and np.prod(out_shape[1:-1]) == np.prod(in_shape[1:-1]):
            return columns[0].copy()
        return None

    def new_config(self, op, config, masks):
        if "target_shape" in config:
            target = list(config["target_shape"])
            target[-1] = int(masks.out_kept(0))
            config["target_shape"] = tuple(target)
        return config


class ChannelZeroPad(Rule):
    """keras_slim.zoo.layers.ChannelZeroPad: zero channels around the input (ResNet option A).
    The zero channels get ids of their own so an Add can couple them to real ones."""

    def propagate(self, op, in_ids, graph):
        before = graph.zero_ids(op, op.config["before"])
        after = graph.zero_ids(op, op.config["after"])
        op.extra["pad_ids"] = (before, after)
        return [np.concatenate([before, in_ids[0], after])]

    def constants(self, op, values):
        return [np.concatenate([np.zeros(op.config["before"]), values[0],
                                np.zeros(op.config["after"])])]

    def keeps_zero(self, op, zeros):
        return zeros[0]  # the padded channels are zero anyway

    def new_config(self, op, config, masks):
        keep = masks.out_mask(0)
        before, after = config["before"], config["after"]
        config["before"] = int(keep[:before].sum())
        config["after"] = int(keep[len(keep) - after:].sum()) if after else 0
        return config


class Gate(ValueMap):
    """keras_slim.dce.gates.ChannelGate: a 0/1 mask per channel. Its config indexes the
    channels of a group, so gates are stripped (gating.strip_gates) before a rebuild."""

    def new_config(self, op, config, masks):
        if not masks.out_mask().all():
            raise GraphError(f"layer {op.path!r} is a ChannelGate: call "
                             "keras_slim.dce.gates.strip_gates(model) before rebuilding.")
        return config


class Barrier(Rule):
    """Mixes channels (LayerNorm, Softmax over channels) or is unknown: keep all."""

    def propagate(self, op, in_ids, graph):
        return graph.barrier(op, in_ids)


class Refuse(Rule):
    def propagate(self, op, in_ids, graph):
        raise GraphError(
            f"layer {op.path!r} is a Lambda: its code cannot be analysed, so no channel "
            "can be removed safely. Replace it with a built-in or a registered custom layer.")


class Softmax(Rule):
    def propagate(self, op, in_ids, graph):
        axis = op.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis in (-1, op.rank(0) - 1):
            return graph.barrier(op, in_ids)
        return [in_ids[0]]


# Activations a DCE gate may move behind; the parameter-free ones pass compact tensors.
_ACTIVATIONS = ["Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU"]
_VALUE_MAPS = ["Rescaling", "Normalization"]
_PADDING = ["ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"]
_PER_CHANNEL = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity",
    "LayerScale",  # keras.applications ConvNeXt: y = x * γ, γ per channel
]

_COMPACT_PASS = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                 "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
                 "Dropout", "SpatialDropout2D", "GaussianNoise", "Identity", "Activation",
                 "ReLU", "LeakyReLU", "ELU"]

RULES = {name: PerChannel() for name in _PER_CHANNEL}
RULES.update({name: ValueMap() for name in _VALUE_MAPS})
RULES.update({name: Activation(gating="act") for name in _ACTIVATIONS})
RULES.update({name: Padding() for name in _PADDING})
RULES.update({
    "BatchNormalization": BatchNorm(gating="bn", compact="bn"),
    "SlimBatchNormalization": BatchNorm(), "GatedBatchNormalization": BatchNorm(),
    "Conv1D": Source(gating="source"), "Conv2D": Source(gating="source", compact="conv"),
    "Conv3D": Source(gating="source"), "GatedConv2D": Source(),
    "GatedDepthwiseConv2D": Depthwise(), "GatedChannelZeroPad": ChannelZeroPad(),
    "ChannelExpand": PerChannel(),
    "Conv1DTranspose": ConvTranspose(), "Conv2DTranspose": ConvTranspose(),
    "Dense": Dense(),
    "DepthwiseConv1D": Depthwise(), "DepthwiseConv2D": Depthwise(compact="depthwise"),
    "SeparableConv1D": Separable(gating="source"),
    "SeparableConv2D": Separable(gating="source"),
    "Add": Merge(compact="merge"), "Subtract": Merge(compact="merge"),
    "Multiply": Merge(compact="merge"), "Average": Merge(compact="merge"),
    "Maximum": Merge(compact="merge"), "Minimum": Merge(compact="merge"),
    "Concatenate": Concat(),
    "Flatten": Reshape(), "Reshape": Reshape(),
    "ChannelZeroPad": ChannelZeroPad(compact="zeropad"), "ChannelGate": Gate(),
    "LayerNormalization": Barrier(), "GroupNormalization": Barrier(),
    "UnitNormalization": Barrier(), "Permute": Barrier(),
    "Softmax": Softmax(),
    "Lambda": Refuse(),
})


for _name in _COMPACT_PASS:
    RULES[_name] = type(RULES[_name])(**dict(vars(RULES[_name]), compact="pass"))

# Operation nodes (x + 3, keras.ops.pad, tf_keras TFOpLambda …): keras_slim/core/op_rules.py.
from keras_slim.core import op_rules  # noqa: E402  (it subclasses Rule, defined above)

RULES.update(op_rules.OP_RULES)
_TF_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


def kind_of(entry):
    """Registry key of a config entry: its class name, "ops.<OpClass>" for a Keras 3
    operation node (op "ops.Add" is not layer "Add"), "tf.<function>" for a tf_keras op
    layer ("tf.math.multiply")."""
    if compat.is_operation_entry(entry):
        return op_rules.OP_PREFIX + entry["class_name"]
    if entry["class_name"] in _TF_OP_LAYERS:
        return op_rules.TF_OP_PREFIX + entry["config"]["function"]
    return entry["class_name"]


def what(op):
    """"operation" or "layer", for messages."""
    return "operation" if op.class_name.startswith((op_rules.OP_PREFIX,
                                                    op_rules.TF_OP_PREFIX)) else "layer"


RULE_KINDS = {"per_channel": PerChannel, "value_map": ValueMap, "activation": Activation,
              "padding": Padding,
              "batch_norm": BatchNorm, "source": Source, "dense": Dense,
              "depthwise": Depthwise, "merge": Merge, "concat": Concat, "reshape": Reshape,
              "barrier": Barrier, "elementwise": op_rules.Elementwise,
              "reduce": op_rules.Reduce, "spatial_pad": op_rules.SpatialPad}


def register_rule(layer, rule):
    """Tell keras-slim how a layer class's channels flow, so models using it prune.

    Args:
      layer: the layer class, or its class name (as in the model config); for an
        operation node, the Keras 3 op class or "ops.<OpClass>", or "tf.<function>" for
        a tf_keras op layer (e.g. "tf.math.erf").
      rule: a Rule instance, or the name of a rule kind: "per_channel" (output channel c
        is input channel c; weights indexed by channel on their last axis are sliced),
        "value_map" (per-channel, and a constant input stays constant through it),
        "activation" (a value_map that runs as an op of its own: latency tables time it),
        "padding", "batch_norm", "source" (creates channels, like Conv2D: `filters`),
        "dense" (`units`), "depthwise", "merge" (element-wise between inputs: couples
        their channels), "concat", "reshape", "barrier" (keeps its channels); for
        operation nodes "elementwise" (couples its tensors, slices per-channel
        constants), "reduce" (over spatial axes), "spatial_pad".
    Returns the rule. A class with no rule is a barrier, with a warning naming it.

    Example:
      @keras.saving.register_keras_serializable()
      class Scale(keras.layers.Layer): ...          # y = x * w, w of shape (C,)
      keras_slim.register_rule(Scale, "per_channel")
    """
    name = layer if isinstance(layer, str) else getattr(layer, "__name__", None)
    if name and not isinstance(layer, str) and compat.is_operation_entry(
            {"module": getattr(layer, "__module__", "")}):
        name = op_rules.OP_PREFIX + name  # a Keras 3 Operation class, not a layer
    if not name:
        raise TypeError(f"layer must be a layer class or a class name, got {layer!r}.")
    if isinstance(rule, str):
        if rule not in RULE_KINDS:
            raise ValueError(f"rule must be a Rule or one of {sorted(RULE_KINDS)}. "
                             f"Received: rule={rule!r}")
        rule = RULE_KINDS[rule]()
    if not isinstance(rule, Rule):
        raise TypeError(f"rule must be a Rule or a rule kind name. Received: {rule!r}")
    RULES[name] = rule
    return rule


def rule_for(class_name):
    """The rule of a layer class name; None means unknown (treated as a barrier).
    tf_keras writes registered custom layers as "package>Name"."""
    return RULES.get(class_name.rsplit(">", 1)[-1])


def bn_weight_index(config, name):
    """Index of "gamma"/"beta"/"moving_mean"/"moving_variance" in a BN's weights."""
    return _bn_weight_names(config).index(name)
