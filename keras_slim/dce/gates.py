"""Per-channel gates for Dynamic Channel Execution.

`ChannelGate` multiplies its input by a 0/1 mask held in a non-trainable variable, so
an inactive channel is exactly zero downstream and gets exactly zero gradient (the conv,
BN and activation before it see dL/dh = 0 for that channel). In training it also records
the Taylor saliency of every channel from the backward pass training already runs (see
keras_slim.dce.saliency).

`gate_model` inserts a gate behind each gatable conv (after the BN and activation that
follow it, i.e. on the feature map h whose channels are gated); `strip_gates` removes
them again. Both edit the model's config and copy weights: the user's model is never
changed.

Coupled channels: channels joined by Add / SE Multiply are one ChannelGraph group and
one channel there is one arm. Every member layer of a gated group gets its own gate,
but all gates of a group are driven by one mask over the group's channels (the gate's
`channel_index` maps its channels to the group's), so a residual channel is on or off
in every branch at once — otherwise switching it off in one branch would not remove it.

Extra gates: where a per-channel layer that does not keep zeros (the BN after a depthwise
conv, a pre-activation BN after an Add) makes switched-off channels non-zero again before
a layer that mixes channels, a gate of the same group goes behind it, so a switched-off
channel really is off (keras_slim.dce.compact.leaking_tensors).

Compact execution (gate_model(..., compact=True), the default): the gated groups' convs,
BNs, depthwise convs and zero pads run on the active channels only in training
(keras_slim.dce.compact); `compact_summary` lists the groups that are masked and why.
"""
import copy
import warnings

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import keras, register_serializable
from keras_slim.dce.compact import (ChannelExpand, TensorGroups, expand, leaking_tensors,
                                    plan_compact)
from keras_slim.dce.bandit import _is_real
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.walk import copy_weights, is_nested_model, iter_layers
from keras_slim.dce.saliency import gated_product, recorded_identity



def _gatable(op):
    """A conv whose output channels DCE can gate (its rule's `gating` trait)."""
    return op.rule is not None and op.rule.gating == "source" \
        and op.config.get("groups", 1) == 1


def _gatable_kinds():
    from keras_slim.core.rules import RULES
    return ", ".join(sorted(n for n, r in RULES.items() if r.gating == "source"))


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
                 expand=False, **kwargs):
        super().__init__(**kwargs)
        if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"ChannelGate {self.name!r}: fraction must be in (0, 1], "
                             f"got {fraction!r}.")
        self.group = group
        self.channel_index = None if channel_index is None else [int(i) for i in
                                                                 channel_index]
        self.fraction = float(fraction)
        # Compact execution (keras_slim.dce.compact): in training the input holds only the
        # `active` channels (`expand`: scatter them back to full width, older models).
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
        # replicas' values are averaged (keras_slim.training.distribute).
        self.saliency = self.add_weight(name="saliency", shape=(channels,),
                                        initializer="zeros", trainable=False,
                                        aggregation=compat.MEAN_AGGREGATION)
        self.index_groups = {}
        if self.active is not None:
            self.index = self.add_weight(name="index", shape=(self.active,), dtype="int32",
                                         initializer="zeros", trainable=False)
            self.index.assign(np.arange(self.active, dtype=np.int32))
            self.index_groups["index"] = (self.group, self.channel_index)
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training and self.fraction < 1.0 and not getattr(self, "controlled", False) \
                and not getattr(self, "_warned", False):
            self._warned = True  # once, when the training step is traced
            warnings.warn(
                f"ChannelGate {self.name!r} trains with fraction {self.fraction:g} but "
                "nothing chooses its channels each step, so it trains a fixed set "
                f"({'the first ' + str(self.active) if self.active else 'the mask as set'}"
                "). Pass keras_slim.dce.CUCBCallback to fit (or attach() one in your own "
                "loop), or strip_gates(model) to train every channel.", stacklevel=2)
        if training and self.active is not None:
            outputs = recorded_identity(inputs, self.index, self.saliency)
            if not self.expand:
                return outputs
            return expand(outputs, self.index, self.mask.shape[0])
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
    """The ChannelGate layers of a model (nested models included), in layer order."""
    return [layer for _, layer in iter_layers(model) if isinstance(layer, ChannelGate)]


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


def _inbound_node(layer, name=None):
    """The inbound node of a layer reading output 0 of `layer` (as layer `name`)."""
    name = name or layer.name
    if compat.LEGACY_KERAS:
        return [[[name, 0, 0, {}]]]
    out = layer.output
    return [{"args": [{"class_name": "__keras_tensor__",
                       "config": {"shape": list(out.shape), "dtype": out.dtype,
                                  "keras_history": [name, 0, 0]}}],
             "kwargs": {}}]


def _insert_gates(model, gates, swaps=None, expands=()):
    """A copy of `model` with gates[path] = ChannelGate inserted behind the layer at each
    path (nested models included), swaps[path] = (class, extra config) applied, and for
    each (layer, source name, consumer name) of `expands` a top-level layer inserted
    between the source and that one consumer."""
    config = copy.deepcopy(compat.graph_config(model))
    compat.drop_build_configs(config)
    _insert_into(config, model, (), gates, swaps or {})
    for layer, source, consumer in expands:
        _insert_before(config, model, layer, source, consumer)
    return compat.model_from_config(model, config)


def _insert_before(config, model, layer, source, consumer):
    """Insert `layer` on the edge from layer `source` (its output 0) into `consumer`."""
    layers = config["layers"]
    position = next(i for i, e in enumerate(layers) if e["config"]["name"] == consumer)
    entry = _serialize(layer)
    entry.pop("build_config", None)
    if not isinstance(model, keras.Sequential):
        names = {other.name for other in model.layers}
        origin = model.get_layer(source) if source in names \
            else _gated_source(model, config, source)
        entry["name"] = layer.name
        entry["inbound_nodes"] = _inbound_node(origin, source)
        _rename_refs(layers[position].get("inbound_nodes", []), source, layer.name)
    layers.insert(position, entry)


def _gated_source(model, config, gate_name):
    """The layer a gate called `gate_name` reads (its output has the gate's shape)."""
    entry = next(e for e in config["layers"] if e["config"]["name"] == gate_name)
    return model.get_layer(compat.inbound_calls(entry)[0][0][0])


def _insert_into(config, level, prefix, gates, swaps):
    """Apply the gates and swaps that lie in `level` (the model at `prefix`) to its config,
    recursing into nested models."""
    layers = config["layers"]
    by_name = {layer.name: layer for layer in level.layers}  # no InputLayer in tf_keras
    new_layers = []
    for entry in layers:
        name = entry["config"]["name"]
        names = prefix + (name,)
        path = "/".join(names)
        layer = by_name.get(name)
        if layer is not None and is_nested_model(layer):
            _insert_into(entry["config"], layer, names, gates, swaps)
        elif path in swaps:
            cls, extra = swaps[path]
            entry = _swapped_entry(entry, layer, cls, extra)
        new_layers.append(entry)
        gate = gates.get(path)
        if gate is None:
            continue
        gate_entry = _serialize(gate)
        gate_entry.pop("build_config", None)
        if not isinstance(level, keras.Sequential):
            gate_entry["name"] = gate.name
            gate_entry["inbound_nodes"] = _inbound_node(layer)
            for other in layers:
                if other is not entry:
                    _rename_refs(other.get("inbound_nodes", []), name, gate.name)
            if prefix:  # a nested model's output gated: the gate becomes its output
                _rename_io(config, "output_layers", name, gate.name)
        new_layers.append(gate_entry)
    config["layers"] = new_layers


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
        kind = nxt.rule.gating if nxt.rule is not None and nxt.rule.gating in ("bn", "act") \
            else None
        if kind is None or kind in seen or nxt.names[:-1] != op.names[:-1]:
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
      compact: run the gated groups on their active channels only in training
        (keras_slim.dce.compact; compact_summary says which groups cannot and why);
        False masks everywhere (full compute, same training).

    Raises ValueError naming the layer if a requested layer cannot be gated (its
    channels reach the model output, it is not a conv, ...) or the model has none.
    """
    plan = _gating_plan(model, fraction, layers, compact)
    new = _insert_gates(model, plan["gates"], plan["swaps"], plan["expands"])
    copy_weights(model, new, leading=True)
    return new


def compact_summary(model, fraction=None, layers=None):
    """Which gated groups run compact at `fraction`, and why the others are masked.

    Args:
      model: a plain model (with `fraction`, and `layers` as for gate_model) or a gated
        one (its gates' fraction and groups).
    Returns {group name: None (runs compact) or the reason it is masked, naming the
    layer, e.g. "Concatenate 'concat_3' mixes groups"}, in group order.
    """
    compat.ensure_model(model)
    gates = gates_of(model)
    compact = True
    if gates:
        compact = any(getattr(layer, "index_groups", None) for _, layer in iter_layers(model))
        groups = sorted({g.group for g in gates})
        fraction = gates[0].fraction if fraction is None else fraction
        model = strip_gates(model)
        graph = ChannelGraph(model)
        layers = [next(p for p in g.layers if _gatable(graph.op_by_path[p]))
                  for g in graph.groups if g.name in groups]
    elif fraction is None:
        raise ValueError("compact_summary: pass the fraction for a model without gates.")
    return _gating_plan(model, fraction, layers, compact)["summary"]


def _gating_plan(model, fraction, layers, compact):
    """What gate_model inserts and swaps: {"gates": {path: ChannelGate}, "swaps": {path:
    (class, extra config)}, "expands": [(ChannelExpand, source, consumer)], "summary":
    {group: None or why it is masked}}."""
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
        return None

    groups = []
    if layers is None:
        for group in graph.groups:
            if any(_gatable(graph.op_by_path[p]) for p in group.layers) \
                    and problem(group) is None:
                groups.append(group)
        if not groups:
            raise ValueError(
                f"model {model.name!r} has no gatable conv layer: DCE gates the channels "
                f"of {_gatable_kinds()} layers whose channels do not reach the model "
                "output.")
    else:
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise ValueError(f"layers must be a list of layer names, got {layers!r}.")
        for name in layers:
            op = graph.op_by_path.get(name)
            if op is None:
                raise ValueError(f"layers: model {model.name!r} has no layer {name!r}.")
            if not _gatable(op):
                raise ValueError(f"layers: layer {name!r} is a {op.class_name}; only "
                                 f"{_gatable_kinds()} with groups=1 can be gated.")
            group = graph.group_of(name)
            why = problem(group)
            if why is not None:
                raise ValueError(f"layers: layer {name!r} cannot be gated: {why}.")
            if group not in groups:
                groups.append(group)

    tensors = TensorGroups(graph)
    gate_keys, named = {}, {}  # group -> gated tensor keys; key -> name of its gate
    for group in groups:
        keys = gate_keys.setdefault(group.name, [])
        for path in group.layers:
            end = _chain_end(graph, graph.op_by_path[path], consumers)
            if end.outputs[0] in graph.output_keys:
                raise ValueError(f"layer {path!r} cannot be gated: its output is a model "
                                 "output.")
            keys.append(end.outputs[0])
            named[end.outputs[0]] = path.rsplit("/", 1)[-1]
        keys.extend(k for k in leaking_tensors(tensors, group, keys) if k not in keys)
    swaps, expands = {}, []
    compact_plan = None
    if compact:  # compact layers are swapped in at the top level; nested groups mask
        top_level = {g.name: (g, gate_keys[g.name]) for g in groups
                     if not any("/" in p for p in g.layers)}
        compact_plan = plan_compact(tensors, top_level, fraction)
        swaps = compact_plan.swaps
    summary = {g.name: compact_plan.summary.get(g.name, "a nested model's group: masked")
               if compact_plan else "compact=False: masked" for g in groups}

    taken = {p.rsplit("/", 1)[-1] for p, _ in iter_layers(model)} | \
        {layer.name for layer in model.layers}
    gates = {}
    for group in groups:
        for key in gate_keys[group.name]:
            end = tensors.producer[key]
            channel_index = tensors.of(key, group)
            identity = channel_index == list(range(group.size))
            extra = {}
            if compact_plan and key in compact_plan.gates:
                extra = {"active": compact_plan.gates[key][1]}
            gates[end.path] = ChannelGate(
                group=group.name, channel_index=None if identity else channel_index,
                fraction=fraction,
                name=_unique_name(f"{named.get(key, end.names[-1])}_gate", taken),
                **extra)
    for key, consumer, entry in compact_plan.expands if compact_plan else ():
        source = tensors.producer[key].path
        source = gates[source].name if source in gates else source
        layer = ChannelExpand(indices={"index": entry},
                              name=_unique_name(f"{consumer}_expand", taken))
        expands.append((layer, source, consumer))
    return {"gates": gates, "swaps": swaps, "expands": expands, "summary": summary}


def _swapped_entry(entry, layer, cls, extra):
    """`entry` (a layer's config entry) rewritten as class `cls` with `extra` config."""
    config = dict(layer.get_config())
    config.pop("indices", None)
    config.update(extra)
    new_entry = _serialize(cls.from_config(config))
    new_entry.pop("build_config", None)
    for key in ("name", "inbound_nodes"):
        if key in entry:
            new_entry[key] = entry[key]
    return new_entry


def strip_gates(model):
    """A copy of `model` without its ChannelGate layers (same outputs when every mask
    is 1); layer names and weights of the other layers are kept, nested models too."""
    compat.ensure_model(model)
    config = copy.deepcopy(compat.graph_config(model))
    compat.drop_build_configs(config)
    if not gates_of(model):
        raise ValueError(f"model {model.name!r} has no ChannelGate layer to strip.")
    _strip_from(config, model)
    new = compat.model_from_config(model, config)
    copy_weights(model, new, skip_missing=True, leading=True)
    return new


def _strip_from(config, level):
    kept = []
    by_name = {layer.name: layer for layer in level.layers}  # no InputLayer in tf_keras
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = by_name.get(name)
        if is_nested_model(layer):
            _strip_from(entry["config"], layer)
        elif getattr(layer, "plain_class", None) is not None:  # compact layers
            entry = _swapped_entry(entry, layer, layer.plain_class, {})
        if not isinstance(layer, (ChannelGate, ChannelExpand)):
            kept.append(entry)
            continue
        if isinstance(level, keras.Sequential):
            continue
        source = compat.inbound_calls(entry)[0][0][0]
        for other in config["layers"]:
            if other is not entry:
                _rename_refs(other.get("inbound_nodes", []), name, source)
        _rename_io(config, "output_layers", name, source)
    config["layers"] = kept


def _rename_io(config, key, old, new):
    refs = config.get(key)
    if not refs:
        return
    if isinstance(refs[0], str):  # a single tensor, Keras 3 style
        if refs[0] == old:
            config[key] = [new, 0, 0]
        return
    config[key] = [[new, 0, 0] if ref[0] == old else list(ref) for ref in refs]
