"""Cosine-anneal a fit's constant learning rate to 0 over the fit's steps.

A pruned model fine-tuned at a constant rate ends mid-descent: the last steps' noise stays
in its weights. The baseline it is compared with was trained on a decaying schedule, so
fine-tuning ends the same way. Optimizers compiled with a schedule are left alone, and so
is a fit whose steps per epoch Keras does not know (a dataset of unknown length).
"""
import math

from keras_slim.compat import keras

__all__ = ["CosineAnnealing"]


def _optimizer(model):
    optimizer = model.optimizer
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer


class CosineAnnealing(keras.callbacks.Callback):
    """Per step: lr = base · ½ (1 + cos(π · step / steps of the fit)); base restored at
    the end of the fit."""

    def on_train_begin(self, logs=None):
        self._total = None
        optimizer = _optimizer(self.model)
        rate = getattr(optimizer, "_learning_rate", None)
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) \
                or not steps or not epochs:
            return
        self._base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self._total, self._steps = int(steps) * int(epochs), int(steps)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._total is None:
            return
        done = min(self._epoch * self._steps + batch, self._total)
        _optimizer(self.model).learning_rate = \
            0.5 * self._base * (1.0 + math.cos(math.pi * done / self._total))

    def on_train_end(self, logs=None):
        if self._total is not None:
            _optimizer(self.model).learning_rate = self._base
