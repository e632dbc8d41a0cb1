"""The signature of a layer call that a latency entry is measured for: its kind, kernel,
strides, padding, dilation, depth multiplier, activation and input spatial size (the
channel counts are the entry's grid axes). Equal signatures share one entry."""
import json

__all__ = ["timed_ops", "signature", "signature_key"]

_FIELDS = ("kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier",
           "activation", "use_bias",
           # activations (ReLU(max_value=1.) is an op of its own, ReLU() is fused)
           "max_value", "negative_slope", "threshold", "alpha", "shared_axes", "theta")


def timed_ops(graph):
    """The layer calls a table times: those whose rule counts MACs (convolutions, dense)
    and the activations that run as ops of their own (Rule.runs_alone: hard-swish,
    swish...). Other element-wise ops, pooling and the interpreter's fixed cost go into
    the fitted overhead and output cost."""
    return [op for op in graph.ops
            if not op.is_input and len(op.inputs) == 1 and (
                op.rule.macs(op) > 0
                and op.rule.width_config(op, op.out_channels(0)) is not None
                or op.rule.runs_alone(op))]


def signature(op):
    """A JSON-able dict naming what the layer's latency depends on besides widths."""
    fields = {k: op.config[k] for k in _FIELDS if k in op.config}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    return {"class": op.class_name, "config": fields,
            "input": [int(d) for d in op.in_shape(0)[1:-1]],
            "cin": int(op.in_channels(0)), "cout": int(op.out_channels(0))}


def signature_key(sig):
    """The entry key: the signature without widths (a pruned layer finds its original's
    entry; grids of several widths share it)."""
    return json.dumps({k: v for k, v in sig.items() if k not in ("cin", "cout")},
                      sort_keys=True, separators=(",", ":"))
