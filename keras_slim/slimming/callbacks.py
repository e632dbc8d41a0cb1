"""Callbacks of sparsity training: λ control (fixed, scheduled, growing), the proximal
step, the penalty in the logs, γ histograms."""
import warnings

import numpy as np
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import keras
from keras_slim.slimming.layer import _check_l1, slim_layers
from keras_slim.slimming.scores import gamma_scores, sparsity_summary
from keras_slim.training.distillation import student_of


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
            logs["sparsity_penalty"] = sparsity_penalty(student_of(self.model))


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
        self.current = set_l1(student_of(self.model), self._value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["l1"] = self.current


class ProximalL1(keras.callbacks.Callback):
    """The L1 term as a proximal step (ISTA; Ye et al., ICLR 2018): after every
    optimizer step, γ ← sign(γ)·max(|γ| − lr·λ·l1_scale, 0) on every
    SlimBatchNormalization built with proximal=True (slimmable(..., proximal=True)).

    Unimportant γ become exactly 0, so their channels emit act(β) and rebuild's constant
    folding is exact with gamma_tolerance=0. lr is the optimizer's rate of that step
    (schedules included; SGD and Adam alike — for Adam it is the base rate, the usual
    proximal-Adam approximation). The state is λ (a layer weight) and the optimizer, so
    checkpoints resume it; under tf.distribute the host assigns every replica's copy.
    Keep steps_per_execution=1: the step runs once per callback call.
    """

    def on_train_begin(self, logs=None):
        model = student_of(self.model)
        self._layers = [l for l in slim_layers(model).values() if l.proximal and l.scale]
        if not self._layers:
            raise ValueError(f"ProximalL1: model {model.name!r} has no "
                             "SlimBatchNormalization with proximal=True; convert it with "
                             "slimmable(model, proximal=True).")

    def on_train_batch_end(self, batch, logs=None):
        lr = compat.last_learning_rate(self.model.optimizer)
        for layer in self._layers:
            _soft_threshold(layer.gamma, lr * layer.effective_l1())


def _soft_threshold(variable, threshold):
    value = tf.convert_to_tensor(variable)
    threshold = tf.cast(threshold, value.dtype)
    variable.assign(tf.sign(value) * tf.maximum(tf.abs(value) - threshold, 0.0))


class GrowingL1(SparsityPenalty):
    """λ that grows until enough γ are near zero, then holds (after Torch-Pruning's
    GrowingReg), so λ needs no sweep.

    Starts at `start`; every `interval` training batches (None: every epoch) it
    multiplies λ by `factor` while the share of |γ| < `threshold` is below `target`
    (e.g. the prune ratio), never above `max_l1`. Once the share reaches the target λ
    stops growing (`reached` is True). `monitor` (a metric in the epoch logs, e.g.
    "val_accuracy") is watched against `baseline` (None: its first epoch value): if it
    falls more than `margin` below, a warning is issued and λ stops growing. Logs `l1`,
    `gamma_sparsity` and `sparsity_penalty`.
    """

    def __init__(self, start, target, factor=2.0, threshold=1e-2, interval=None,
                 max_l1=None, monitor="val_accuracy", baseline=None, margin=0.02):
        super().__init__()
        self.start = _check_l1(start, "start")
        if not 0.0 < float(target) <= 1.0:
            raise ValueError(f"GrowingL1: target must be a share in (0, 1]. Received: "
                             f"{target!r}")
        if float(factor) <= 1.0:
            raise ValueError(f"GrowingL1: factor must be > 1. Received: {factor!r}")
        if interval is not None and (not isinstance(interval, int) or interval < 1):
            raise ValueError(f"GrowingL1: interval must be a positive integer or None. "
                             f"Received: {interval!r}")
        self.target, self.factor = float(target), float(factor)
        self.threshold = _check_l1(threshold, "threshold")
        self.interval = interval
        self.max_l1 = None if max_l1 is None else _check_l1(max_l1, "max_l1")
        self.monitor, self.baseline = monitor, baseline
        self.margin = _check_l1(margin, "margin")
        self.current, self.reached, self.held, self.share = self.start, False, False, 0.0
        self._batches = 0

    def on_train_begin(self, logs=None):
        self.current = set_l1(student_of(self.model), self.current)

    def _share(self):
        return sparsity_summary(student_of(self.model), self.threshold)["overall"]["share"]

    def _step(self):
        self.share = self._share()
        if self.share >= self.target:
            self.reached = True
        if self.reached or self.held:
            return
        grown = self.current * self.factor
        if self.max_l1 is not None:
            grown = min(grown, self.max_l1)
        self.current = set_l1(student_of(self.model), grown)

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.interval is not None and self._batches % self.interval == 0:
            self._step()

    def on_epoch_end(self, epoch, logs=None):
        if self.interval is None:
            self._step()
        value = (logs or {}).get(self.monitor)
        if value is not None:
            if self.baseline is None:
                self.baseline = float(value)
            elif float(value) < self.baseline - self.margin and not self.held:
                self.held = True
                warnings.warn(
                    f"GrowingL1: {self.monitor} = {float(value):.4f} fell more than "
                    f"{self.margin:g} below its start {self.baseline:.4f} at λ = "
                    f"{self.current:g}; λ stops growing (lower `factor` or `start`).",
                    stacklevel=2)
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["l1"], logs["gamma_sparsity"] = self.current, self.share


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
        model = student_of(self.model)
        summary = sparsity_summary(model, self.threshold)
        share = summary["overall"]["share"]
        if self._writer is not None:
            scores = gamma_scores(model)
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

