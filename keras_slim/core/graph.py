"""A functional Keras model as channel dependency groups.

Every channel of every tensor gets an integer id. Layers that create channels (conv,
dense) draw fresh ids; per-channel layers pass ids on; element-wise merges (Add, SE
Multiply) union ids position by position; Concatenate and Flatten only re-index them.
After one pass in topological order, ids with the same union-find root are one
*channel* that must be kept or removed as a whole, and channels that share a layer
form a *group* (a plain conv's channels; a whole residual stage).

Channels that reach a model input or output, or pass a barrier, are fixed.
"""
import warnings
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.core import rules
from keras_slim.compat import GraphError, keras
from keras_slim.core.walk import INPUT_CLASS, is_input_entry, is_nested_model

_INPUT, _SOURCE, _ZERO, _FIXED = "input", "source", "zero", "fixed"


def _shape(tensor):
    return tuple(tf.TensorShape(tensor.shape).as_list())


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(eq=False)
class Op:
    """One call of one layer in the flattened graph (nested models inlined)."""
    names: tuple              # ("outer_layer",) or ("nested_model", "inner_layer")
    layer: object
    class_name: str
    config: dict
    inputs: list              # tensor keys
    outputs: list
    graph: "ChannelGraph" = field(repr=False, default=None)
    extra: dict = field(default_factory=dict)
    rule: object = None       # its keras_slim.core.rules entry (None for inputs)
    entry: dict = field(repr=False, default=None)  # its config entry (calls of op nodes)

    @property
    def path(self):
        return "/".join(self.names)

    @property
    def is_input(self):
        return not self.inputs  # every layer call has an input; an input has none

    def in_shape(self, i=0):
        return self.graph.shapes[self.inputs[i]]

    def out_shape(self, i=0):
        return self.graph.shapes[self.outputs[i]]

    def rank(self, i=0):
        return len(self.in_shape(i))

    def in_channels(self, i=0):
        return self.in_shape(i)[-1]

    def out_channels(self, i=0):
        return self.out_shape(i)[-1]

    def in_ids(self, i=0):
        return self.graph.ids[self.inputs[i]]

    def out_ids(self, i=0):
        return self.graph.ids[self.outputs[i]]


@dataclass
class Group:
    """Channels kept or removed together; channel j is `roots[j]`."""
    index: int
    name: str                 # its first channel-creating layer
    layers: list              # paths of the layers that create its channels
    roots: np.ndarray         # union-find root per channel, in canonical order
    prunable: np.ndarray      # bool per channel (False: reaches an input/output/barrier)

    @property
    def size(self):
        return len(self.roots)


class ChannelGraph:
    """Channel dependency analysis of a Functional or Sequential model."""

    def __init__(self, model):
        compat.ensure_model(model)
        if not compat.is_graph_model(model):
            raise GraphError(
                f"model {model.name!r} is a subclassed model: its graph is Python code that "
                "cannot be read. Build it with the functional API or keras.Sequential.")
        self.model = model
        self.ops, self.shapes, self.ids = [], {}, {}
        self.nested_inputs = {}  # path of a nested model's InputLayer -> outer tensor key
        self._parent, self._owner, self._kind, self._fixed = [], [], [], []
        self.output_keys = self._walk(model, (), None)
        self.input_keys = [k for op in self.ops if op.is_input for k in op.outputs]
        for op in self.ops:
            self._propagate(op)
        for key in self.output_keys:
            self._fix(self.ids[key])
        self.groups = self._make_groups()
        self.op_by_path = {op.path: op for op in self.ops}

    # --- reading the graph -------------------------------------------------------
    def _walk(self, model, prefix, input_keys):
        """Append the model's layer calls to self.ops; return its output tensor keys."""
        config = compat.graph_config(model)
        if isinstance(model, keras.Sequential):
            return self._walk_sequential(model, config, prefix, input_keys)
        produced = {}  # (layer name, tensor index) -> key
        inputs = compat.io_refs(config["input_layers"])
        nodes = compat.operations_by_name(model)
        for entry in config["layers"]:
            name = entry["config"]["name"]
            layer = nodes[name]
            names = prefix + (name,)
            if is_input_entry(entry):
                if input_keys is None:
                    key = self._add_input(names, layer)
                else:  # a nested model's input is the outer tensor it was called on
                    key = input_keys[[r[0] for r in inputs].index(name)]
                    self.nested_inputs[names] = key
                produced[(name, 0)] = key
                continue
            calls = compat.inbound_calls(entry)
            if len(calls) != 1:
                raise GraphError(
                    f"layer {'/'.join(names)!r} is called {len(calls)} times (a shared layer); its "
                    "channels would have to be pruned identically everywhere, which is not "
                    "supported. Give each call its own layer.")
            in_keys = [produced[ref] for ref in calls[0]]
            if is_nested_model(layer):
                out_keys = self._walk(layer, names, in_keys)
            else:
                out_keys = self._add_op(names, layer, entry, in_keys)
            for i, key in enumerate(out_keys):
                produced[(name, i)] = key
        return [produced[ref] for ref in compat.io_refs(config["output_layers"])]

    def _walk_sequential(self, model, config, prefix, input_keys):
        entries = [e for e in config["layers"] if not is_input_entry(e)]
        if input_keys is not None:
            for e in config["layers"]:
                if is_input_entry(e):
                    self.nested_inputs[prefix + (e["config"]["name"],)] = input_keys[0]
        if input_keys is None:
            if not model.inputs:
                raise GraphError(f"Sequential model {model.name!r} has no input shape yet; "
                                 "build it (keras.Input first) before pruning.")
            input_keys = [self._add_input(prefix + (model.name + "_input",), model.inputs[0])]
        keys = input_keys
        for entry, layer in zip(entries, model.layers):
            names = prefix + (layer.name,)
            if is_nested_model(layer):
                keys = self._walk(layer, names, keys)
            else:
                keys = self._add_op(names, layer, entry, keys)
        return keys

    def _add_input(self, names, layer_or_tensor):
        tensor = getattr(layer_or_tensor, "output", layer_or_tensor)
        op = Op(names, layer_or_tensor, INPUT_CLASS, {}, [], [], self)
        key = op.path + ":0"
        op.outputs.append(key)
        self.shapes[key] = _shape(tensor)
        self.ids[key] = self._new_ids(op.path, self.shapes[key][-1], _INPUT)
        self.ops.append(op)
        return key

    def _add_op(self, names, layer, entry, in_keys):
        outputs = _as_list(layer.output)
        path = "/".join(names)
        out_keys = [f"{path}:{i}" for i in range(len(outputs))]
        for key, tensor in zip(out_keys, outputs):
            self.shapes[key] = _shape(tensor)
        self.ops.append(Op(names, layer, rules.kind_of(entry), entry["config"], in_keys,
                           out_keys, self, entry=entry))
        return out_keys

    # --- channel ids ---------------------------------------------------------------
    def _new_ids(self, path, n, kind):
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        self._owner.extend((path, j) for j in range(n))
        self._kind.extend([kind] * n)
        self._fixed.extend([kind in (_FIXED, _INPUT)] * n)
        return np.arange(start, start + n)

    def fresh_ids(self, op, n):
        return self._new_ids(op.path, n, _SOURCE)

    def zero_ids(self, op, n):
        return self._new_ids(op.path, n, _ZERO)

    def find(self, i):
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def roots(self, ids):
        return np.array([self.find(int(i)) for i in ids], dtype=np.int64)

    def union(self, a, b):
        for i, j in zip(a, b):
            ri, rj = self.find(int(i)), self.find(int(j))
            if ri != rj:
                self._parent[max(ri, rj)] = min(ri, rj)

    def _fix(self, ids):
        for i in ids:
            self._fixed[int(i)] = True

    def barrier(self, op, in_ids):
        for ids in in_ids:
            self._fix(ids)
        outs = [self._new_ids(op.path, op.out_channels(i), _FIXED)
                for i in range(len(op.outputs))]
        return outs

    def _propagate(self, op):
        if op.is_input:
            return
        rule = rules.rule_for(op.class_name)
        if rule is None:
            warnings.warn(f"{rules.what(op)} {op.path!r} ({op.class_name}) has no channel "
                          "rule: its input and output channels are kept unpruned. Register "
                          "one with keras_slim.register_rule.", stacklevel=3)
            rule = rules.Barrier()
        op.rule = rule
        in_ids = [self.ids[k] for k in op.inputs]
        outs = rule.propagate(op, in_ids, self)
        if op.config.get("activation") in ("softmax", "log_softmax"):
            for ids in outs:  # normalises over its own outputs: removing one changes all
                self._fix(ids)
        for key, ids in zip(op.outputs, outs):
            if len(ids) != self.shapes[key][-1]:
                raise GraphError(f"layer {op.path!r}: rule gave {len(ids)} channel ids for "
                                 f"an output of {self.shapes[key][-1]} channels.")
            self.ids[key] = ids

    # --- groups ----------------------------------------------------------------------
    def _make_groups(self):
        order = {op.path: n for n, op in enumerate(self.ops)}
        members = {}  # root -> [(op order, channel, path)] of its source ids
        for i, kind in enumerate(self._kind):
            if kind == _SOURCE:
                path, channel = self._owner[i]
                members.setdefault(self.find(i), []).append((order[path], channel, path))
        fixed_roots = {self.find(i) for i, fixed in enumerate(self._fixed) if fixed}
        # Channels that share a channel-creating layer belong to one group.
        layer_parent = {}

        def lfind(p):
            while layer_parent.setdefault(p, p) != p:
                p = layer_parent[p]
            return p

        for mem in members.values():
            paths = [m[2] for m in mem]
            for p in paths[1:]:
                a, b = lfind(paths[0]), lfind(p)
                if a != b:
                    layer_parent[max(a, b, key=order.get)] = min(a, b, key=order.get)
        by_group = {}
        for root, mem in members.items():
            by_group.setdefault(lfind(mem[0][2]), []).append((min(mem), root))
        groups = []
        for head in sorted(by_group, key=order.get):
            chans = sorted(by_group[head])
            layer_paths = sorted({m[2] for _, r in chans for m in members[r]}, key=order.get)
            roots = np.array([r for _, r in chans], dtype=np.int64)
            prunable = np.array([r not in fixed_roots for r in roots])
            groups.append(Group(len(groups), head, layer_paths, roots, prunable))
        return groups

    @property
    def prunable_groups(self):
        return [g for g in self.groups if g.prunable.any()]

    def group_of(self, path):
        for g in self.groups:
            if path in g.layers:
                return g
        raise KeyError(path)

    def channel_roots(self, path):
        """Union-find roots of the output channels of a layer (for scoring it)."""
        if path not in self.op_by_path:
            raise GraphError(f"no layer {path!r} in model {self.model.name!r}.")
        return self.roots(self.op_by_path[path].out_ids(0))

    def describe(self):
        lines = [f"{len(self.groups)} groups in {self.model.name!r}:"]
        for g in self.groups:
            lines.append(f"  [{g.index}] {g.name}: {g.size} channels "
                         f"({int(g.prunable.sum())} prunable), layers {', '.join(g.layers)}")
        return "\n".join(lines)
