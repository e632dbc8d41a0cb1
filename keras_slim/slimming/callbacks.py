"""Callbacks of sparsity training: λ control, the penalty in the logs, γ histograms."""
import numpy as np
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim.slimming.layer import _check_l1, slim_layers
from keras_slim.slimming.scores import gamma_scores, sparsity_summary


def set_l1(model, value):
    """Set λ of every SlimBatchNormalization in `model` (no recompile needed)."""
    value = _check_l1(value, "value")
    layers = slim_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no SlimBatchNormalization layer; "
                         "convert it with slimmable(model) first.")
    for layer in layers.values():
        layer.l1 = value
    return value


def sparsity_penalty(model):
    """Current λ·Σ|γ| summed over every SlimBatchNormalization, as a float."""
    return float(sum(float(l.penalty()) for l in slim_layers(model).values()))


class SparsityPenalty(keras.callbacks.Callback):
    """Adds `sparsity_penalty` (λ·Σ|γ| over all SlimBN layers, at epoch end) to the
    epoch logs, hence to `history.history`."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sparsity_penalty"] = sparsity_penalty(self.model)


class L1Schedule(SparsityPenalty):
    """Sets λ at the start of every epoch; logs `l1` and `sparsity_penalty`.

    `schedule` is a float (constant λ) or a callable epoch -> λ (epoch from 0), e.g.

        L1Schedule(1e-4)                                          # constant
        L1Schedule(lambda e: 1e-4 * min(1.0, (e + 1) / 5))        # linear warm-up, 5 ep
        L1Schedule(lambda e: 1e-4 * 0.5 ** (e // 10))             # halve every 10 ep
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            _check_l1(schedule, "schedule")
        self.schedule = schedule
        self.current = None

    def _value(self, epoch):
        value = self.schedule(epoch) if callable(self.schedule) else self.schedule
        return _check_l1(value, f"schedule({epoch})")

    def on_epoch_begin(self, epoch, logs=None):
        self.current = set_l1(self.model, self._value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["l1"] = self.current



class GammaLogger(keras.callbacks.Callback):
    """Each epoch: tf.summary histograms of |γ| per layer and overall plus the share
    below `threshold` (if log_dir is given), logs `gamma_sparsity`, prints one line."""

    def __init__(self, log_dir=None, threshold=1e-2, verbose=1):
        super().__init__()
        self.threshold = _check_l1(threshold, "threshold")
        self.log_dir, self.verbose = log_dir, verbose
        self._writer = tf.summary.create_file_writer(log_dir) if log_dir else None

    @staticmethod
    def _histogram(tag, values, step):
        tf.summary.histogram(tag, values, step=step)

    def on_epoch_end(self, epoch, logs=None):
        summary = sparsity_summary(self.model, self.threshold)
        share = summary["overall"]["share"]
        if self._writer is not None:
            scores = gamma_scores(self.model)
            with self._writer.as_default(step=epoch):
                for path, values in scores.items():
                    self._histogram(f"gamma/{path}", values, epoch)
                self._histogram("gamma/all", np.concatenate(list(scores.values())), epoch)
                tf.summary.write("gamma/share_below_threshold", share, step=epoch)
            self._writer.flush()
        if logs is not None:
            logs["gamma_sparsity"] = share
        if self.verbose:
            print(f"epoch {epoch + 1}: {100 * share:.1f}% of |γ| < {self.threshold:g} "
                  f"({summary['overall']['below']}/{summary['overall']['channels']})")

