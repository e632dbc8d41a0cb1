"""Re-estimate a model's BatchNormalization moving statistics on a few training batches
(AdaBN; the BN calibration of slimmable networks).

Training with a different subset of channels active every step (DCE) leaves each BN's
moving mean and variance describing inputs summed over *some* channels; the rebuilt
model sums over the kept ones all at once. In a deep residual net the mismatch
compounds until the rebuilt model predicts at chance before fine-tuning. Averaging the
batch statistics of a few forward passes fixes that and changes no trained weight.
"""
import numbers

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import keras
from keras_slim.core import rules
from keras_slim.core.walk import iter_layers

__all__ = ["recalibrate_batch_norm"]


def _batch_norms(model):
    """The BN layers (by the rule registry, nested models included) whose statistics a
    training-mode pass updates at `momentum`: trainable, no batch renormalization."""
    return [layer for _, layer in iter_layers(model)
            if isinstance(rules.rule_for(type(layer).__name__), rules.BatchNorm)
            and layer.trainable and hasattr(layer, "momentum")
            and not getattr(layer, "renorm", False)]


def _inputs(element):
    return keras.utils.unpack_x_y_sample_weight(
        tuple(element) if isinstance(element, list) else element)[0]


def _is_sequence(data):
    kinds = tuple(getattr(keras.utils, n) for n in ("PyDataset", "Sequence")
                  if hasattr(keras.utils, n))
    return isinstance(data, kinds)


def _input_batches(data, steps, batch_size, seed):
    """Up to `steps` input batches of: a tf.data.Dataset, keras PyDataset / Sequence or
    iterator of batches (x, (x, y) or (x, y, sample_weight); x an array, a list / tuple
    or a dict of arrays), or unbatched arrays as `fit` takes them — x, (x, y) or
    (x, y, sample_weight) — of which steps × batch_size random examples are used."""
    if isinstance(data, tf.data.Dataset):
        yield from (_inputs(e) for e in data.take(steps))
    elif _is_sequence(data):
        yield from (_inputs(data[i]) for i in range(min(len(data), steps)))
    elif hasattr(data, "__next__") or (hasattr(data, "__iter__")
                                       and not isinstance(data, (tuple, list, dict))
                                       and not hasattr(data, "shape")):
        for _, element in zip(range(steps), data):  # advances the iterator
            yield _inputs(element)
    else:
        x = _inputs(data) if isinstance(data, tuple) else data
        count = len(tf.nest.flatten(x)[0])
        rows = np.sort(np.random.default_rng(seed).permutation(count)[:steps * batch_size])
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            yield tf.nest.map_structure(lambda a: tf.gather(a, part), x)


def recalibrate_batch_norm(model, data, steps=20, batch_size=32, seed=0):
    """Set the moving mean and variance of `model`'s BatchNormalization layers to the
    average of their batch statistics over `steps` batches of `data` (weighted by batch
    size), in place.

    data: what `fit` takes — a tf.data.Dataset, keras PyDataset or iterator of batches
    (an iterator is advanced by `steps`), or arrays x / (x, y) cut into batch_size
    (random examples, `seed`). The passes run in training mode (Dropout too). Only
    trainable BNs without renorm are re-estimated; every other variable, including
    other layers' statistics, is put back as it was. A BN that the model calls with
    training=False keeps its statistics.
    Returns the number of batches used (0 when the model has no such BN).
    """
    compat.ensure_model(model)
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1. Received: steps={steps!r}")
    layers = _batch_norms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    # Restored afterwards: everything except the statistics re-estimated here (the
    # passes also move skipped layers' statistics and random-seed states), and those
    # too if a pass fails.
    saved = [(v, np.array(v)) for v in model.non_trainable_variables]
    estimated = {id(v) for layer in layers
                 for v in (layer.moving_mean, layer.moving_variance)}
    seen = used = 0
    finished = False
    try:
        for x in _input_batches(data, steps, batch_size, seed):
            size = int(tf.shape(tf.nest.flatten(x)[0])[0])
            # momentum seen/(seen+size): the moving value becomes the size-weighted
            # running mean of the batches' statistics.
            for layer in layers:
                layer.momentum = seen / float(seen + size)
            model(x, training=True)
            seen += size
            used += 1
        if not used:
            raise ValueError("recalibrate_batch_norm: data gave no batch.")
        finished = True
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for variable, value in saved:
            if not finished or id(variable) not in estimated:
                variable.assign(value)
    return used
