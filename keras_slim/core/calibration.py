"""Per-channel statistics of intermediate tensors over calibration batches, for
data-aware compensation: a removed channel is replaced by its mean output (mean
replacement) at the tensor its consumer reads, and the statistics say how far the
per-example outputs are from that mean.

The ChannelGraph's ops are replayed layer by layer (inference mode), so tensors inside
nested models are reached the same way as top-level ones.
"""
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_slim.core.equivalence import _batches

__all__ = ["ChannelStats", "channel_stats"]


@dataclass
class ChannelStats:
    """Per channel of one tensor, over every example and position of the batches."""
    mean: np.ndarray
    mean_abs_dev: np.ndarray   # mean |x − mean|
    std: np.ndarray
    max_abs_dev: np.ndarray    # max |x − mean|: 0 for a channel that is constant


def _replay(graph, x, keys):
    """{key: value} of the tensors `keys` for one input batch."""
    inputs = x if isinstance(x, (list, tuple)) else [x]
    if len(inputs) != len(graph.input_keys):
        raise ValueError(f"calibration_data: model {graph.model.name!r} has "
                         f"{len(graph.input_keys)} input(s), a batch gave {len(inputs)}.")
    values = dict(zip(graph.input_keys, (tf.convert_to_tensor(v) for v in inputs)))
    for op in graph.ops:
        if op.is_input:
            continue
        args = [values[k] for k in op.inputs]
        out = op.layer(args if len(args) > 1 else args[0], training=False)
        for key, value in zip(op.outputs, tf.nest.flatten(out)):
            values[key] = value
    return {k: np.asarray(values[k], np.float64) for k in keys}


def channel_stats(graph, data, keys):
    """{key: ChannelStats} over the calibration batches `data` (an array, a list of
    arrays for several inputs, or a tf.data.Dataset of x or (x, y))."""
    if data is None:
        raise ValueError("calibration_data must be input batches. Received: None")
    keys = list(keys)
    # Kept in memory (only the needed tensors): calibration is a few batches.
    flat = {k: [] for k in keys}
    for x in _batches(graph.model, data, 0, 0):
        for k, v in _replay(graph, x, keys).items():
            flat[k].append(v.reshape(-1, v.shape[-1]))
    if keys and not flat[keys[0]]:
        raise ValueError("calibration_data is empty. Received: no batch.")
    stats = {}
    for k in keys:
        v = np.concatenate(flat[k])
        mean = v.mean(axis=0)
        d = np.abs(v - mean)
        stats[k] = ChannelStats(mean, d.mean(axis=0), np.sqrt((d ** 2).mean(axis=0)),
                                d.max(axis=0))
    return stats
