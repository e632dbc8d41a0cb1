"""Per-channel gates for Dynamic Channel Execution.

`ChannelGate` multiplies its input by a 0/1 mask held in a non-trainable variable, so
an inactive channel is exactly zero downstream and gets exactly zero gradient (the conv,
BN and activation before it see dL/dh = 0 for that channel). In training it also records
the Taylor saliency of every channel from the backward pass training already runs (see
keras_slim.saliency).

`gate_model` inserts a gate behind each gatable conv (after the BN and activation that
follow it, i.e. on the feature map h whose channels are gated); `strip_gates` removes
them again. Both edit the model's config and copy weights: the user's model is never
changed.

Coupled channels: channels joined by Add / SE Multiply are one ChannelGraph group and
one channel there is one arm. Every member layer of a gated group gets its own gate,
but all gates of a group are driven by one mask over the group's channels (the gate's
`channel_index` maps its channels to the group's), so a residual channel is on or off
in every branch at once — otherwise switching it off in one branch would not remove it.

Compact execution (gate_model(..., compact=True), the default): plain conv chains are
rewritten to GatedConv2D / GatedBatchNormalization layers that compute only the active
channels in training (keras_slim.compact); other gated groups are masked.
"""
import copy

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import GraphError, keras, register_serializable
from keras_slim.compact import GatedBatchNormalization, GatedConv2D, plan_compact
from keras_slim.cucb import _is_real
from keras_slim.graph import ChannelGraph
from keras_slim.saliency import gated_product, recorded_identity

GATABLE = ("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D")
# Layers the gate moves behind: per-channel, so h keeps the conv's channels.
_FOLLOW = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU",
           "ThresholdedReLU")


@register_serializable()
class ChannelGate(keras.layers.Layer):
    """y = x * mask over the last axis; mask is a non-trainable 0/1 variable (C,).

    Args:
      group: name of the ChannelGraph group whose channels this gate switches.
      channel_index: for each of this layer's channels, its index in the group (None:
        the identity).
      fraction: share of the group's channels meant to be active per step (read by
        keras_slim.dce.CUCBCallback as its default).
    """

    def __init__(self, group=None, channel_index=None, fraction=1.0, active=None,
                 expand=True, **kwargs):
        super().__init__(**kwargs)
        if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"ChannelGate {self.name!r}: fraction must be in (0, 1], "
                             f"got {fraction!r}.")
        self.group = group
        self.channel_index = None if channel_index is None else [int(i) for i in
                                                                 channel_index]
        self.fraction = float(fraction)
        # Compact execution (keras_slim.compact): in training the input holds only the
        # `active` channels; `expand` scatters them back to full width for the consumers.
        self.active = None if active is None else int(active)
        self.expand = bool(expand)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"ChannelGate {self.name!r}: the channel axis must be known.")
        if self.channel_index is not None and len(self.channel_index) != channels:
            raise ValueError(f"ChannelGate {self.name!r}: channel_index has "
                             f"{len(self.channel_index)} entries for {channels} channels.")
        self.mask = self.add_weight(name="mask", shape=(channels,), initializer="ones",
                                    trainable=False)
        # Taylor saliency of the last training step, per channel (see saliency.py).
        # Assigned in the backward pass, i.e. per replica under tf.distribute: the
        # replicas' values are averaged (keras_slim.distribute).
        self.saliency = self.add_weight(name="saliency", shape=(channels,),
                                        initializer="zeros", trainable=False,
                                        aggregation=compat.MEAN_AGGREGATION)
        self.index_groups = {}
        if self.active is not None:
            self.index = self.add_weight(name="index", shape=(self.active,), dtype="int32",
                                         initializer="zeros", trainable=False)
            self.index.assign(np.arange(self.active, dtype=np.int32))
            self.index_groups["index"] = self.group
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training and self.active is not None:
            outputs = recorded_identity(inputs, self.index, self.saliency)
            if not self.expand:
                return outputs
            channels = self.mask.shape[0]
            index = self.index[:, None]
            position = tf.scatter_nd(index, tf.range(self.active), [channels])
            on = tf.scatter_nd(index, tf.ones([self.active], outputs.dtype), [channels])
            return tf.gather(outputs, position, axis=-1) * on
        if training and self.fraction >= 1.0:
            # Every channel active every step (CUCBCallback checks): skip the mask.
            return recorded_identity(inputs, None, self.saliency)
        mask = tf.cast(tf.convert_to_tensor(self.mask), inputs.dtype)
        if training:
            return gated_product(inputs, mask, self.saliency)
        return inputs * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(group=self.group, channel_index=self.channel_index,
                      fraction=self.fraction, active=self.active, expand=self.expand)
        return config


def gates_of(model):
    """The ChannelGate layers of a model, in layer order."""
    return [layer for layer in model.layers if isinstance(layer, ChannelGate)]


# --- config surgery ---------------------------------------------------------------------
def _serialize(layer):
    if compat.LEGACY_KERAS:
        return keras.layers.serialize(layer)
    return keras.saving.serialize_keras_object(layer)


def _rename_refs(value, old, new):
    """Point every reference to output 0 of layer `old` at layer `new` (both formats)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":  # Keras 3
            history = value["config"]["keras_history"]
            if history[0] == old and history[2] == 0:
                value["config"]["keras_history"] = [new, 0, 0]
            return
        for v in value.values():
            _rename_refs(v, old, new)
    elif isinstance(value, (list, tuple)):  # Keras 3 configs hold tuples too
        # tf_keras: [layer_name, node_index, tensor_index, kwargs]
        if len(value) == 4 and isinstance(value[0], str) and isinstance(value[3], dict):
            if value[0] == old and value[2] == 0:
                value[0], value[1], value[2] = new, 0, 0  # tf_keras lists are mutable
            return
        for v in value:
            _rename_refs(v, old, new)


def _inbound_node(layer):
    if compat.LEGACY_KERAS:
        return [[[layer.name, 0, 0, {}]]]
    out = layer.output
    return [{"args": [{"class_name": "__keras_tensor__",
                       "config": {"shape": list(out.shape), "dtype": out.dtype,
                                  "keras_history": [layer.name, 0, 0]}}],
             "kwargs": {}}]


def _copy_weights(source, target):
    """Weights by layer name; layers only in `target` (gates) keep their initial values.
    Compact layers add index variables after the plain layer's weights: only the
    shared leading weights are copied."""
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        src = by_name.get(layer.name)
        if src is None or not src.weights:
            continue
        values = src.get_weights()
        if len(values) == len(layer.weights):
            layer.set_weights(values)
        else:
            for variable, value in zip(layer.weights, values):
                variable.assign(value)


def _insert_gates(model, gates, swaps=None):
    """A copy of `model` with gates[(target layer name)] = ChannelGate inserted behind
    each target layer, and swaps[name] = (class, extra config) applied."""
    config = copy.deepcopy(model.get_config())
    compat.drop_build_configs(config)
    layers = config["layers"]
    new_layers = []
    for entry in layers:
        name = entry["config"]["name"]
        if swaps and name in swaps:
            cls, extra = swaps[name]
            entry = _swapped_entry(entry, model.get_layer(name), cls, extra)
        new_layers.append(entry)
        gate = gates.get(name)
        if gate is None:
            continue
        gate_entry = _serialize(gate)
        gate_entry.pop("build_config", None)
        if not isinstance(model, keras.Sequential):
            gate_entry["name"] = gate.name
            gate_entry["inbound_nodes"] = _inbound_node(model.get_layer(name))
            for other in layers:
                if other is not entry:
                    _rename_refs(other.get("inbound_nodes", []), name, gate.name)
        new_layers.append(gate_entry)
    config["layers"] = new_layers
    return compat.model_from_config(model, config)


def _chain_end(graph, op, consumers):
    """Follow single-consumer BN / activation layers behind `op`: the gate goes on h."""
    seen = set()
    if op.config.get("activation", "linear") not in ("linear", None):
        seen.add("act")  # conv already applies its activation; a BN may still follow
    while True:
        nexts = consumers.get(op.outputs[0], [])
        if len(nexts) != 1 or len(op.outputs) != 1 or len(nexts[0].inputs) != 1:
            return op
        nxt = nexts[0]
        kind = "bn" if nxt.class_name == "BatchNormalization" else \
            "act" if nxt.class_name in _FOLLOW else None
        if kind is None or kind in seen or len(nxt.names) != 1:
            return op
        seen.add(kind)
        op = nxt


def _unique_name(wanted, taken):
    name, n = wanted, 1
    while name in taken:
        name, n = f"{wanted}_{n}", n + 1
    taken.add(name)
    return name


def gate_model(model, fraction, layers=None, compact=True):
    """A copy of `model` with a ChannelGate on the output h of every gatable conv.

    Args:
      model: a functional or Sequential Keras model (not changed).
      fraction: share of channels active per training step, in (0, 1] (stored in the
        gates as the default of CUCBCallback).
      layers: names of conv layers to gate (their whole ChannelGraph group is gated);
        None gates every top-level conv whose channels can all be pruned.
      compact: run plain conv chains on their active channels only in training
        (keras_slim.compact); False masks everywhere (full compute, same training).

    Raises ValueError naming the layer if a requested layer cannot be gated (its
    channels reach the model output, it is not a conv, ...) or the model has none.
    """
    compat.ensure_model(model)
    if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    if gates_of(model):
        raise ValueError(f"model {model.name!r} already has ChannelGate layers "
                         f"({[g.name for g in gates_of(model)]}); strip_gates it first.")
    graph = ChannelGraph(model)
    consumers = {}
    for op in graph.ops:
        for key in op.inputs:
            consumers.setdefault(key, []).append(op)

    def problem(group):
        """Why a group cannot be gated, or None."""
        if not group.prunable.all():
            return ("some of its channels reach a model input/output or a barrier layer, "
                    "so they can never be switched off")
        nested = [p for p in group.layers if "/" in p]
        if nested:
            return f"its channels are created inside nested models ({nested})"
        return None

    groups = []
    if layers is None:
        for group in graph.groups:
            if any(graph.op_by_path[p].class_name in GATABLE for p in group.layers) \
                    and problem(group) is None:
                groups.append(group)
        if not groups:
            raise ValueError(
                f"model {model.name!r} has no gatable conv layer: DCE gates the channels "
                f"of {', '.join(GATABLE)} layers whose channels do not reach the model "
                "output.")
    else:
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise ValueError(f"layers must be a list of layer names, got {layers!r}.")
        for name in layers:
            op = graph.op_by_path.get(name)
            if op is None:
                raise ValueError(f"layers: model {model.name!r} has no layer {name!r}.")
            if op.class_name not in GATABLE or op.config.get("groups", 1) != 1:
                raise ValueError(f"layers: layer {name!r} is a {op.class_name}; only "
                                 f"{', '.join(GATABLE)} with groups=1 can be gated.")
            group = graph.group_of(name)
            why = problem(group)
            if why is not None:
                raise ValueError(f"layers: layer {name!r} cannot be gated: {why}.")
            if group not in groups:
                groups.append(group)

    chains = {}
    for group in groups:
        for path in group.layers:
            end = _chain_end(graph, graph.op_by_path[path], consumers)
            if end.outputs[0] in graph.output_keys:
                raise ValueError(f"layer {path!r} cannot be gated: its output is a model "
                                 "output.")
            chains[path] = end
    swaps = {}
    compact_gates = {}
    if compact:
        plan = plan_compact(graph, consumers, groups, chains, fraction)
        swaps.update({p: (GatedConv2D, kw) for p, kw in plan["convs"].items()})
        swaps.update({p: (GatedBatchNormalization, kw) for p, kw in plan["bns"].items()})
        compact_gates = plan["gates"]

    taken = {layer.name for layer in model.layers}
    gates = {}
    for group in groups:
        index = {int(r): j for j, r in enumerate(group.roots)}
        for path in group.layers:
            end = chains[path]
            channel_index = [index[int(r)] for r in graph.roots(graph.ids[end.outputs[0]])]
            identity = channel_index == list(range(group.size))
            extra = {}
            if end.path in compact_gates:
                _, active, expand = compact_gates[end.path]
                extra = {"active": active, "expand": expand}
            gates[end.path] = ChannelGate(
                group=group.name, channel_index=None if identity else channel_index,
                fraction=fraction, name=_unique_name(f"{path}_gate", taken), **extra)
    new = _insert_gates(model, gates, swaps)
    _copy_weights(model, new)
    return new


def _swapped_entry(entry, layer, cls, extra):
    """`entry` (a layer's config entry) rewritten as class `cls` with `extra` config."""
    config = dict(layer.get_config())
    for key in ("group", "active", "input_group", "input_active"):
        config.pop(key, None)
    config.update(extra)
    new_entry = _serialize(cls.from_config(config))
    new_entry.pop("build_config", None)
    for key in ("name", "inbound_nodes"):
        if key in entry:
            new_entry[key] = entry[key]
    return new_entry


def strip_gates(model):
    """A copy of `model` without its ChannelGate layers (same outputs when every mask
    is 1); layer names and weights of the other layers are kept."""
    compat.ensure_model(model)
    config = copy.deepcopy(model.get_config())
    compat.drop_build_configs(config)
    gate_names = {g.name for g in gates_of(model)}
    if not gate_names:
        raise ValueError(f"model {model.name!r} has no ChannelGate layer to strip.")
    kept = []
    by_name = {layer.name: layer for layer in model.layers}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = by_name.get(name)
        if isinstance(layer, (GatedConv2D, GatedBatchNormalization)):
            plain = keras.layers.Conv2D if isinstance(layer, GatedConv2D) \
                else keras.layers.BatchNormalization
            entry = _swapped_entry(entry, layer, plain, {})
        if name not in gate_names:
            kept.append(entry)
            continue
        if isinstance(model, keras.Sequential):
            continue
        calls = compat.inbound_calls(entry)
        source = calls[0][0][0]
        for other in config["layers"]:
            if other is not entry:
                _rename_refs(other.get("inbound_nodes", []), name, source)
        _rename_io(config, "output_layers", name, source)
    config["layers"] = kept
    new = compat.model_from_config(model, config)
    _copy_weights(model, new)
    return new


def _rename_io(config, key, old, new):
    refs = config.get(key)
    if not refs:
        return
    if isinstance(refs[0], str):  # a single tensor, Keras 3 style
        if refs[0] == old:
            config[key] = [new, 0, 0]
        return
    config[key] = [[new, 0, 0] if ref[0] == old else list(ref) for ref in refs]
