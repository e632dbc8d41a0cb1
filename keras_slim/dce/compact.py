"""Compact execution for Dynamic Channel Execution: a training step with p < 1 active
channels really computes less.

Masking (keras_slim.dce.gates.ChannelGate alone) zeroes inactive channels after the full
convolution, so it saves nothing. In a compact chain

    GatedConv2D -> [GatedBatchNormalization] -> [activation] -> ChannelGate

the training step runs on the k = active_count(C, p) active channels only: the conv
gathers its active filters (and, when its producer is compact too, the active input
channels of its kernel) and emits a (..., k) tensor; BN normalises those k channels with
their own γ, β and updates only their moving statistics; the gate records their saliency
and either hands the k channels on to the next compact conv (through per-channel layers
such as MaxPooling2D) or expands them back to full width with zeros (anything else: a
Dense head, an Add, ...). Inactive filters are never computed, so they get no gradient.

Which layers go compact is decided by `plan_compact` (called by gating.gate_model with
compact=True): a gated group with a single Conv2D member (groups=1, channels_last), i.e.
plain conv chains. Everything else - coupled groups (Add / SE), separable and 1D/3D
convs - falls back to masking, and is listed by `compact_summary`.

Outside training (evaluation, export, training=False) every layer runs at full width
with its normal Keras code. k is fixed at gate time, so tf.function traces one step.
The active indices live in int32 variables that keras_slim.dce.CUCBCallback writes
before every step (`index_groups` maps each such variable to the group it follows).
"""
import numpy as np
import tensorflow as tf

from keras_slim.compat import keras, register_serializable
from keras_slim.dce.bandit import active_count



def _compact_kind(op):
    """The rule's `compact` trait: "conv", "bn", "pass" (a compact tensor passes) or None."""
    return op.rule.compact if op.rule is not None else None


def _index_variable(layer, name, size):
    var = layer.add_weight(name=name, shape=(size,), dtype="int32", initializer="zeros",
                           trainable=False)
    var.assign(np.arange(size, dtype=np.int32))
    return var


@register_serializable()
class GatedConv2D(keras.layers.Conv2D):
    """A Conv2D that, in training, computes only its `active` output filters.

    Args (besides Conv2D's):
      group: the ChannelGraph group of its output channels (None: not gated).
      active: number of active output filters per step.
      input_group, input_active: the group and active count of its input channels when
        its producer hands it a compact (..., input_active) tensor; None otherwise.
    Strips to a plain Conv2D (gating.strip_gates).
    """

    def __init__(self, *args, group=None, active=None, input_group=None, input_active=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.group, self.active = group, active
        self.input_group, self.input_active = input_group, input_active

    def build(self, input_shape):
        super().build(input_shape)
        self.input_spec = None  # a compact input has input_active channels, not C
        self.index_groups = {}
        if self.group is not None:
            self.out_index = _index_variable(self, "out_index", self.active)
            self.index_groups["out_index"] = self.group
        if self.input_group is not None:
            self.in_index = _index_variable(self, "in_index", self.input_active)
            self.index_groups["in_index"] = self.input_group

    def call(self, inputs, training=None):
        if not training or not self.index_groups:
            if self.input_group is not None and inputs.shape[-1] == self.input_active:
                raise ValueError(f"layer {self.name!r} got a compact input outside training.")
            return super().call(inputs)
        kernel = tf.convert_to_tensor(self.kernel)
        if self.input_group is not None:
            kernel = tf.gather(kernel, self.in_index, axis=2)
        if self.group is not None:
            kernel = tf.gather(kernel, self.out_index, axis=3)
        outputs = tf.nn.conv2d(inputs, tf.cast(kernel, inputs.dtype), strides=self.strides,
                               padding=self.padding.upper(), dilations=self.dilation_rate)
        if self.use_bias:
            bias = tf.convert_to_tensor(self.bias)
            if self.group is not None:
                bias = tf.gather(bias, self.out_index)
            outputs = tf.nn.bias_add(outputs, tf.cast(bias, outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def save_own_variables(self, store):
        # Keras 3's Conv saves kernel and bias only; keep the variable count its loader
        # checks. (The indices are rewritten before every step, so their values do not
        # matter.)
        super().save_own_variables(store)
        saved = len(store.keys())
        for i, variable in enumerate(self.weights[saved:]):
            store[str(saved + i)] = variable.numpy()

    def get_config(self):
        config = super().get_config()
        config.update(group=self.group, active=self.active, input_group=self.input_group,
                      input_active=self.input_active)
        return config


@register_serializable()
class GatedBatchNormalization(keras.layers.BatchNormalization):
    """A BatchNormalization that, in training, normalises a compact (..., active) input
    with the active channels' γ and β and updates only their moving statistics."""

    def __init__(self, *args, group=None, active=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group, self.active = group, active

    def build(self, input_shape):
        super().build(input_shape)
        self.input_spec = None
        self.index = _index_variable(self, "index", self.active)
        self.index_groups = {"index": self.group}

    def call(self, inputs, training=None, **kwargs):
        if not training or not self.trainable:
            return super().call(inputs, training=training, **kwargs)
        index = self.index
        x = tf.cast(inputs, tf.float32)
        gamma = tf.gather(tf.convert_to_tensor(self.gamma), index) if self.scale else None
        beta = tf.gather(tf.convert_to_tensor(self.beta), index) if self.center else None
        # The fused kernel is about twice as fast on CPU, but measured slower than the
        # two-op path for channel counts that are not multiples of 8 (oneDNN blocking).
        if len(x.shape) == 4 and self.active % 8 == 0 \
                and not getattr(self, "synchronized", False):
            outputs, mean, variance = self._fused(x, gamma, beta)
        else:
            mean, variance = self._moments(x, list(range(len(x.shape) - 1)))
            outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
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

    def get_config(self):
        config = super().get_config()
        config.update(group=self.group, active=self.active)
        return config


def plan_compact(graph, consumers, gated_groups, chains, fraction):
    """Which layers of a gated model run compact.

    Args:
      graph: ChannelGraph of the plain model; consumers: {tensor key: [ops]}.
      gated_groups: the groups gate_model gates; chains: {conv path: chain end op}.
    Returns {"convs": {path: kwargs}, "bns": {path: kwargs}, "gates": {end path:
    (group, active, expand)}} - the extra config of every compact layer.
    """
    convs, bns, gates = {}, {}, {}
    compact_groups = {}
    for group in gated_groups:
        if len(group.layers) != 1:
            continue  # coupled channels (Add / SE): masking
        op = graph.op_by_path[group.layers[0]]
        config = op.config
        if _compact_kind(op) != "conv" or config.get("groups", 1) != 1 \
                or config.get("data_format", "channels_last") != "channels_last" \
                or not _plain_chain(op, chains[op.path], consumers):
            continue
        active = active_count(group.size, fraction)
        if active < group.size:  # all channels active: nothing to save, just mask
            compact_groups[group.name] = (op, active)
    for name, (op, active) in compact_groups.items():
        convs[op.path] = {"group": name, "active": active}
    for name, (op, active) in compact_groups.items():
        end = chains[op.path]
        step = op
        while step is not end:  # the BN / activations between conv and gate
            step = consumers[step.outputs[0]][0]
            if _compact_kind(step) == "bn":
                bns[step.path] = {"group": name, "active": active}
        readers = _compact_readers(graph, consumers, end, compact_groups)
        for reader in readers or ():
            convs[reader.path].update(input_group=name, input_active=active)
        gates[end.path] = (name, active, readers is None)
    return {"convs": convs, "bns": bns, "gates": gates}


def _plain_chain(conv, end, consumers):
    """True if conv -> gate holds only BN (last axis) and parameter-free activations."""
    step = conv
    while step is not end:
        step = consumers[step.outputs[0]][0]
        if _compact_kind(step) == "bn":
            axis = step.config.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis not in (-1, step.rank(0) - 1):
                return False
        elif _compact_kind(step) != "pass":
            return False
    return True


def _compact_readers(graph, consumers, end, compact_groups):
    """The compact convs that read `end`'s output through per-channel layers only, or
    None if anything else reads it (then the gate expands back to full width)."""
    readers, frontier = [], [end]
    compact_convs = {op.path for op, _ in compact_groups.values()}
    while frontier:
        op = frontier.pop()
        if op.outputs[0] in graph.output_keys:
            return None
        nexts = consumers.get(op.outputs[0], [])
        if not nexts:
            return None
        for nxt in nexts:
            if len(nxt.inputs) != 1 or len(nxt.outputs) != 1:
                return None
            if nxt.path in compact_convs:
                readers.append(nxt)
            elif _compact_kind(nxt) == "pass" and "/" not in nxt.path:
                frontier.append(nxt)
            else:
                return None
    return readers
