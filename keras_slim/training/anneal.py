"""Cosine-anneal a constant learning rate to 0 over a fit.

A pruned model fine-tuned at a constant rate ends mid-descent: the last steps' noise stays
in its weights. The baseline it is compared with was trained on a decaying schedule, so
fine-tuning ends the same way. The rate becomes Keras' CosineDecay, driven by the
optimizer's step counter (so a resumed fit continues it). Left alone: an optimizer
compiled with a schedule, data of unknown length, and a fit with its own learning-rate
callback.
"""
import numpy as np
import tensorflow as tf

from keras_slim.compat import keras, set_learning_rate_schedule

__all__ = ["cosine_anneal"]

# Callbacks that set the rate themselves (and cannot set it over a schedule).
_RATE_CALLBACKS = (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau)


def _batches(data):
    """Batches per epoch of a tf.data dataset of known, finite length, else None."""
    if isinstance(data, tf.data.Dataset):
        count = int(data.cardinality())
        return count if count > 0 else None
    return None


def cosine_anneal(optimizer, data, epochs, callbacks=()):
    """Give a compiled, not yet trained `optimizer` a cosine decay from its constant
    learning rate to 0 over `epochs` passes through `data`. Returns True if it did (the
    optimizer then ends at rate 0: compile again to train on)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    rate = getattr(optimizer, "_learning_rate", None)
    batches = _batches(data)
    if rate is None or callable(rate) or not batches or not epochs \
            or isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) \
            or any(isinstance(c, _RATE_CALLBACKS) for c in callbacks):
        return False
    base = float(np.asarray(rate))
    set_learning_rate_schedule(optimizer, keras.optimizers.schedules.CosineDecay(
        base, int(batches) * int(epochs)))
    return True
