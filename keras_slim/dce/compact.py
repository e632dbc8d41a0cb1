"""Compact execution for Dynamic Channel Execution: a training step with p < 1 active
channels really computes less.

Masking (keras_slim.dce.gates.ChannelGate alone) zeroes inactive channels after the full
convolution, so it saves nothing. In compact execution every tensor whose channels all
belong to one gated group is carried compact in training: its active channels only, in
the tensor's own channel order (a residual stream between adds, an SE product, a
depthwise conv's input and output all run at k channels). The layers:

  * GatedConv2D gathers its active filters (a group member) and/or the kernel rows of the
    active channels of a compact input; GatedBatchNormalization normalises the active
    channels with their γ, β and moves only their statistics; GatedDepthwiseConv2D
    gathers its kernel's channels; GatedChannelZeroPad (ResNet option A) pads with the
    active share of its zero channels;
  * per-channel layers (ReLU, pooling, global pooling, spatial padding, dropout) and
    element-wise merges (Add, SE Multiply incl. its (B, 1, 1, C) broadcast) pass compact
    tensors unchanged (the rules' `compact` trait says which);
  * a ChannelExpand layer scatters a compact tensor back to full width, with zeros, on the
    edge into anything else (a Dense head, a Flatten, a nested model) - only that edge.

Every layer holds int32 index variables (the local positions of the active channels in
its tensor) listed in `index_groups` {attribute: (group, channel_index)}; CUCBCallback
writes them before every step. A tensor may hold a subset of its group's channels (ResNet
option A: the stage-1 stream holds 16 of the stream's 64), so the bandit plays a fixed
count per *segment* (channels held by the same gated tensors; keras_slim.dce.bandit):
every tensor then has a fixed count k, and tf.function traces one step.

The spec is the masked step: same loss, gradients, BN statistics of the active channels
and saliency. That holds where every switched-off channel is exactly zero in the masked
model wherever channels are mixed (a conv's input, an expanded edge); gate_model puts a
gate behind every per-channel chain that does not keep zeros (the BN after a depthwise
conv, a pre-activation BN) so it does. `plan_compact` checks it per group and falls back
to masking where it cannot hold or a layer has no compact form; `compact_summary` says
which groups run compact and why the others do not. Nested models mask.

Outside training (evaluation, export, training=False) every layer runs at full width
with its normal Keras code; strip_gates gives the plain layers back.
"""
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_slim.compat import BN_MOVING_VARIANCE_BESSEL, keras, register_serializable
from keras_slim.dce.bandit import active_count, segments
from keras_slim.zoo.layers import ChannelZeroPad


def _compact_kind(op):
    """The rule's `compact` trait (see keras_slim.core.rules.Rule), or None."""
    return op.rule.compact if op.rule is not None else None


def _index_variable(layer, name, size):
    var = layer.add_weight(name=name, shape=(size,), dtype="int32", initializer="zeros",
                           trainable=False)
    var.assign(np.arange(size, dtype=np.int32))
    return var


class _Indexed:
    """A layer with active-channel index variables. `indices` = {attribute: [group,
    active, channel_index]}: the variable holds the local positions of the `active`
    active channels of a tensor whose channel j is channel channel_index[j] of `group`
    (None: channel j of the group)."""
    plain_class = None  # what strip_gates turns it into

    def __init__(self, *args, indices=None, **kwargs):
        legacy = sorted({"group", "active", "input_group", "input_active"} & set(kwargs))
        if legacy:  # saved before compact execution covered coupled groups
            raise ValueError(
                f"{type(self).__name__} {kwargs.get('name')!r} was saved by an older "
                f"keras-slim (config keys {legacy}); this version cannot train it. Strip its "
                "gates with the version that saved it, or gate the plain model again "
                "(keras_slim.dce.gate_model).")
        super().__init__(*args, **kwargs)
        self.indices = {str(a): _index_entry(*v) for a, v in (indices or {}).items()}

    def build(self, input_shape):
        super().build(input_shape)
        self.input_spec = None  # a compact input has fewer channels than the config says
        self.index_groups = {}
        for attribute, (group, active, channels) in self.indices.items():
            setattr(self, attribute, _index_variable(self, attribute, active))
            self.index_groups[attribute] = (group, channels)

    def _compact(self, training):
        return bool(training) and bool(self.indices)

    def get_config(self):
        config = super().get_config()
        config["indices"] = {a: _index_entry(*v) for a, v in self.indices.items()}
        return config


def _index_entry(group, active, channels):
    """[group, active, channel_index] as plain JSON values."""
    return [str(group), int(active), None if channels is None else [int(c) for c in channels]]


def _save_all_variables(layer, store):
    """Keras 3's Conv saves kernel and bias only; add the index variables so the variable
    count its loader checks matches. (Their values are rewritten before every step.)"""
    count = len(store.keys())
    for i, variable in enumerate(layer.weights[count:]):
        store[str(count + i)] = variable.numpy()


@register_serializable()
class GatedConv2D(_Indexed, keras.layers.Conv2D):
    """A Conv2D that, in training, computes only its active output filters (`out_index`)
    and/or reads a compact input through the active rows of its kernel (`in_index`).
    Strips to a plain Conv2D (gates.strip_gates)."""
    plain_class = keras.layers.Conv2D

    def call(self, inputs, training=None):
        if not self._compact(training):
            return super().call(inputs)
        kernel = tf.convert_to_tensor(self.kernel)
        if "in_index" in self.indices:
            kernel = tf.gather(kernel, self.in_index, axis=2)
        bias = tf.convert_to_tensor(self.bias) if self.use_bias else None
        if "out_index" in self.indices:
            kernel = tf.gather(kernel, self.out_index, axis=3)
            bias = None if bias is None else tf.gather(bias, self.out_index)
        outputs = tf.nn.conv2d(inputs, tf.cast(kernel, inputs.dtype), strides=self.strides,
                               padding=self.padding.upper(), dilations=self.dilation_rate)
        if bias is not None:
            outputs = tf.nn.bias_add(outputs, tf.cast(bias, outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        _save_all_variables(self, store)


@register_serializable()
class GatedDepthwiseConv2D(_Indexed, keras.layers.DepthwiseConv2D):
    """A DepthwiseConv2D (depth_multiplier 1) that, in training, convolves only the active
    channels (`index`) of its compact input."""
    plain_class = keras.layers.DepthwiseConv2D

    def call(self, inputs, training=None):
        if not self._compact(training):
            return super().call(inputs)
        # weights[0] is the depthwise kernel (h, w, C, 1) in both Keras flavours
        kernel = tf.gather(tf.convert_to_tensor(self.weights[0]), self.index, axis=2)
        strides = (1,) + tuple(self.strides) + (1,)
        outputs = tf.nn.depthwise_conv2d(inputs, tf.cast(kernel, inputs.dtype), strides,
                                         self.padding.upper(), dilations=self.dilation_rate)
        if self.use_bias:
            bias = tf.gather(tf.convert_to_tensor(self.bias), self.index)
            outputs = tf.nn.bias_add(outputs, tf.cast(bias, outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)


@register_serializable()
class GatedChannelZeroPad(_Indexed, ChannelZeroPad):
    """ChannelZeroPad on a compact input: its output's active channels (`out_index`) are
    the active padded channels in front, the input's, the active padded ones behind; how
    many are in front varies per step (the group's segment may span both sides)."""
    plain_class = ChannelZeroPad

    def call(self, inputs, training=None):
        if not self._compact(training):
            return super().call(inputs)
        active = int(self.out_index.shape[0])
        front = tf.reduce_sum(tf.cast(self.out_index < self.before, tf.int32))
        back = active - int(inputs.shape[-1]) - front
        paddings = tf.concat([tf.zeros([len(inputs.shape) - 1, 2], tf.int32),
                              tf.stack([front, back])[None]], axis=0)
        outputs = tf.pad(inputs, paddings)
        return tf.ensure_shape(outputs, list(inputs.shape[:-1]) + [active])


def expand(inputs, index, channels):
    """A compact (..., k) tensor holding channels `index` of a `channels`-wide one, back
    at full width with zeros elsewhere."""
    position = tf.scatter_nd(index[:, None], tf.range(1, tf.shape(index)[0] + 1),
                             [channels])  # 0: a switched-off channel
    padded = tf.concat([tf.zeros_like(inputs[..., :1]), inputs], axis=-1)
    return tf.gather(padded, position, axis=-1)


@register_serializable()
class ChannelExpand(_Indexed, keras.layers.Layer):
    """In training, scatters a compact input (the `index` channels) back to full width
    with zeros, for a consumer that needs every channel; the identity otherwise. Removed
    by strip_gates."""

    def build(self, input_shape):
        self.channels = int(input_shape[-1])
        super().build(input_shape)

    def call(self, inputs, training=None):
        if not self._compact(training):
            return inputs
        return expand(inputs, self.index, self.channels)

    def compute_output_shape(self, input_shape):
        return input_shape


@register_serializable()
class GatedBatchNormalization(_Indexed, keras.layers.BatchNormalization):
    """A BatchNormalization that, in training, normalises a compact (..., active) input
    with the active channels' γ and β and updates only their moving statistics (frozen:
    with their moving statistics)."""
    plain_class = keras.layers.BatchNormalization

    def call(self, inputs, training=None, **kwargs):
        if not self._compact(training):
            return super().call(inputs, training=training, **kwargs)
        index = self.index
        if not self.trainable:  # frozen BN runs in inference mode, on the active channels
            x = tf.cast(inputs, tf.float32)
            take = [tf.gather(tf.convert_to_tensor(v), index) if v is not None else None
                    for v in (self.moving_mean, self.moving_variance,
                              self.beta if self.center else None,
                              self.gamma if self.scale else None)]
            return tf.cast(tf.nn.batch_normalization(x, *take, self.epsilon), inputs.dtype)
        x = tf.cast(inputs, tf.float32)
        gamma = tf.gather(tf.convert_to_tensor(self.gamma), index) if self.scale else None
        beta = tf.gather(tf.convert_to_tensor(self.beta), index) if self.center else None
        # The fused kernel is about twice as fast on CPU, but measured slower than the
        # two-op path for channel counts that are not multiples of 8 (oneDNN blocking).
        if len(x.shape) == 4 and int(index.shape[0]) % 8 == 0 \
                and not getattr(self, "synchronized", False):
            outputs, mean, variance = self._fused(x, gamma, beta)
        else:
            mean, variance = self._moments(x, list(range(len(x.shape) - 1)))
            outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        if BN_MOVING_VARIANCE_BESSEL and getattr(self, "fused", False):  # as tf_keras' BN
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            variance = variance * count / (count - 1.0)
        for var, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            full = tf.convert_to_tensor(var)
            moved = tf.gather(full, index) * self.momentum + batch_value * (1 - self.momentum)
            var.assign(tf.tensor_scatter_nd_update(full, index[:, None], moved))
        return tf.cast(outputs, inputs.dtype)

    def _fused(self, x, gamma, beta):
        """One fused kernel (what tf_keras' BN runs). Returns the biased batch variance,
        as Keras 3's BN uses for its moving variance."""
        channels = tf.shape(x)[-1:]
        gamma = tf.ones(channels) if gamma is None else gamma
        beta = tf.zeros(channels) if beta is None else beta
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        return outputs, mean, variance * (count - 1.0) / count  # fused returns n-1 based

    def _moments(self, x, axes):
        """Batch moments; with synchronized=True over the global batch of all replicas
        (tf.distribute), like Keras' synchronized BatchNormalization."""
        replica = tf.distribute.get_replica_context()
        if not getattr(self, "synchronized", False) or replica is None \
                or replica.num_replicas_in_sync == 1:
            return tf.nn.moments(x, axes=axes)
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
        total, squares, count = replica.all_reduce(
            tf.distribute.ReduceOp.SUM,
            [tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), count])
        mean = total / count
        return mean, tf.maximum(squares / count - tf.square(mean), 0.0)




# --- which layers run compact -------------------------------------------------------------
_SWAPS = {"conv": (GatedConv2D, "out_index"), "bn": (GatedBatchNormalization, "index"),
          "depthwise": (GatedDepthwiseConv2D, "index"), "zeropad": (GatedChannelZeroPad,
                                                                    "out_index")}
_PER_CHANNEL = ("pass", "bn", "depthwise", "zeropad")  # one input, channel c stays c


@dataclass
class CompactPlan:
    """What gate_model changes for compact execution."""
    swaps: dict = field(default_factory=dict)    # layer path -> (class, {"indices": ...})
    gates: dict = field(default_factory=dict)    # gated tensor key -> index entry
    expands: list = field(default_factory=list)  # (tensor key, consumer path, index entry)
    summary: dict = field(default_factory=dict)  # group name -> None (compact) or reason


class TensorGroups:
    """For each tensor of a ChannelGraph, the group indices of its channels."""

    def __init__(self, graph):
        self.graph = graph
        group_of = {int(r): (g.index, j) for g in graph.groups for j, r in enumerate(g.roots)}
        self.channels = {}  # key -> [group index of each channel], [index in that group]
        for key, ids in graph.ids.items():
            found = [group_of.get(int(r), (-1, -1)) for r in graph.roots(ids)]
            self.channels[key] = ([g for g, _ in found], [j for _, j in found])
        self.producer = {k: op for op in graph.ops for k in op.outputs}
        self.consumers = {}
        for op in graph.ops:
            for key in op.inputs:
                self.consumers.setdefault(key, []).append(op)

    def of(self, key, group):
        """The group indices of the tensor's channels if it holds only `group`'s."""
        owners, channels = self.channels[key]
        return channels if set(owners) == {group.index} else None

    def mixes(self, key, group):
        """True if the tensor holds channels of `group` and others."""
        owners = set(self.channels[key][0])
        return group.index in owners and len(owners) > 1


def zero_tensors(tensors, group, gated_keys):
    """Tensors of `group` whose switched-off channels are exactly zero in the masked
    model: the gated ones and what per-channel layers that keep zeros make of them."""
    return _zero_pass(tensors, group, gated_keys, gate_leaks=False)[0]


def leaking_tensors(tensors, group, gated_keys):
    """Tensors of `group` whose switched-off channels are not zero in the masked model
    (a BN after a depthwise conv or after an Add) but reach a layer that mixes channels or
    leaves the group: where gate_model puts an extra gate."""
    return _zero_pass(tensors, group, gated_keys, gate_leaks=True)[1]


def _zero_pass(tensors, group, gated_keys, gate_leaks):
    zero, extra = set(gated_keys), []
    for op in tensors.graph.ops:
        if not op.inputs or len(op.outputs) != 1:
            continue
        key = op.outputs[0]
        if key in zero or tensors.of(key, group) is None:
            continue
        flags = [k in zero for k in op.inputs]
        if any(flags) and op.rule is not None and op.rule.keeps_zero(op, flags):
            zero.add(key)
        elif gate_leaks and isinstance(op.layer, keras.layers.Layer) \
                and any(_leaves(c, tensors, group) for c in tensors.consumers.get(key, [])):
            # A gate goes behind layers only: a Keras 3 operation node is no layer to
            # insert one after. Its output then leaks in the masked model as before, and
            # compact execution expands before it, so both still agree.
            extra.append(key)
            zero.add(key)
    return zero, extra


def _leaves(op, tensors, group):
    """True if `op` mixes channels or its output is not `group`'s alone."""
    return op.rule is None or op.rule.creates_channels or len(op.outputs) != 1 \
        or tensors.of(op.outputs[0], group) is None


def plan_compact(tensors, gated, fraction):
    """Which layers of a gated model run compact.

    Args:
      tensors: TensorGroups of the plain model.
      gated: {group name: (Group, [keys of the tensors its gates sit on])}, top-level
        groups only.
      fraction: the share p of active channels.
    Returns a CompactPlan.
    """
    plan = CompactPlan()
    for name, (group, gate_keys) in gated.items():
        result = _plan_group(tensors, group, gate_keys, fraction)
        if isinstance(result, str):
            plan.summary[name] = result
            continue
        plan.summary[name] = None
        compact, readers, expands = result
        for key, entry in compact.items():
            op = tensors.producer[key]
            if _compact_kind(op) in _SWAPS:
                cls, attribute = _SWAPS[_compact_kind(op)]
                _add_swap(plan, op.path, cls, attribute, entry)
            if key in gate_keys:
                plan.gates[key] = entry
        for op, key in readers:
            _add_swap(plan, op.path, GatedConv2D, "in_index", compact[key])
        for key, op in expands:
            consumer = op.names[0]  # a nested model reads it as a whole
            if (key, consumer) not in [(k, c) for k, c, _ in plan.expands]:
                plan.expands.append((key, consumer, compact[key]))
    return plan


def _add_swap(plan, path, cls, attribute, entry):
    _, extra = plan.swaps.setdefault(path, (cls, {"indices": {}}))
    extra["indices"][attribute] = entry


def _conv_ok(op):
    return _compact_kind(op) == "conv" and op.config.get("groups", 1) == 1 \
        and op.config.get("data_format", "channels_last") == "channels_last" \
        and len(op.inputs) == 1 and len(op.outputs) == 1 and "/" not in op.path


def _plan_group(tensors, group, gate_keys, fraction):
    """(compact tensors {key: index entry}, conv readers [(op, key)], expanded edges
    [(key, op)]) of one group, or the reason it is masked."""
    graph = tensors.graph
    segs = segments([tensors.of(k, group) or [] for k in gate_keys], group.size)
    counts = [active_count(len(s), fraction) for s in segs]
    if all(c == len(s) for c, s in zip(counts, segs)):
        return "every channel is active at this fraction (nothing to save)"
    members = [graph.op_by_path[p] for p in group.layers]
    for op in members:
        if not _conv_ok(op):
            where = "is inside a nested model" if "/" in op.path else "has no compact form"
            return f"{_what(op)} {where}"
    compact = {op.outputs[0] for op in members}
    readers, expands = [], []
    for op in graph.ops:
        for key in op.outputs:
            if tensors.mixes(key, group):
                return f"{_what(op)} mixes groups"
        inputs = [k for k in op.inputs if k in compact]
        if not inputs:
            continue
        kind = _compact_kind(op)
        if "/" in op.path or op.config.get("data_format", "channels_last") != "channels_last":
            kind = None
        if kind == "conv":
            if _conv_ok(op):
                readers.append((op, inputs[0]))
            else:
                expands.extend((k, op) for k in inputs)
        elif kind == "merge":
            if len(inputs) != len([k for k in op.inputs if graph.shapes[k][-1] != 1]):
                return f"{_what(op)} merges a compact and a full-width tensor"
            compact.add(op.outputs[0])
        elif kind in _PER_CHANNEL and len(op.inputs) == 1 and len(op.outputs) == 1:
            if kind == "depthwise" and op.config.get("depth_multiplier", 1) != 1:
                return f"{_what(op)} depth_multiplier={op.config['depth_multiplier']}"
            why = _setting_without_compact_form(op)
            if why:
                return f"{_what(op)} {why}"
            compact.add(op.outputs[0])
        else:
            expands.extend((k, op) for k in inputs)
    if compact & set(graph.output_keys):
        return "its channels reach a model output"
    zero = zero_tensors(tensors, group, gate_keys)
    for op, key in readers + [(op, key) for key, op in expands]:
        if key not in zero:
            return (f"{_what(op)} reads switched-off channels that are not zero in the "
                    "masked model")
    seg_of = np.empty(group.size, dtype=np.int64)
    for i, s in enumerate(segs):
        seg_of[s] = i
    entries = {}
    for key in compact:
        channels = tensors.of(key, group)
        if len(set(channels)) != len(channels):
            return f"{_what(tensors.producer[key])} repeats channels"
        held = np.bincount(seg_of[channels], minlength=len(segs))
        sizes = np.array([len(s) for s in segs])
        if ((held > 0) & (held < sizes)).any():
            return f"{_what(tensors.producer[key])} holds part of a channel segment"
        active = int(sum(c for c, h in zip(counts, held) if h))
        identity = channels == list(range(group.size))
        entries[key] = _index_entry(group.name, active, None if identity else channels)
    return entries, readers, expands


def _setting_without_compact_form(op):
    """A layer setting the compact layers do not reproduce, or None."""
    if op.config.get("renorm"):  # tf_keras batch renormalization
        return "renorm=True"
    if op.config.get("noise_shape") is not None:  # names the full channel count
        return f"noise_shape={op.config['noise_shape']}"
    return None


def _what(op):
    return f"{op.class_name} {op.path!r}"
