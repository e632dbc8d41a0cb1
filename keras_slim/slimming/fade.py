"""GammaFade: fade the γ (and β) of the channels the prune will remove to exactly 0 while
the model trains, leaving every other channel alone.

For a trained model this replaces the uniform L1 penalty, whose λ has to fit the
model's width, depth and learning rate (a λ that sparsifies one net in an epoch leaves
another untouched or at chance). It follows growing regularization (Wang et al., ICLR
2021; Torch-Pruning's GrowingRegPruner): only the channels selected for removal are
pushed to zero, gradually, so the rest of the network learns to do without them and the
prune that follows removes exact zeros. β fades with γ: a channel left at act(β) is a
constant that rebuild can only fold approximately where a 'same' convolution's borders
or an SE gate see it; at γ = β = 0 a ReLU-family channel emits 0 and removing it is exact.
"""
import warnings

import numpy as np

from keras_slim.compat import keras
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.walk import iter_layers
from keras_slim.slimming.layer import is_bn
from keras_slim.training.distillation import student_of

DEFAULT_FADE_SHARE = 0.75  # of the training batches; the rest adapts to the pruned net


class GammaFade(keras.callbacks.Callback):
    """Ramps the γ (and, with fade_beta, β) of the channels `plan_fn` removes linearly
    down to exactly 0.

    plan_fn(graph) -> ChannelPlan: the plan the prune step will make from the current γ
    (e.g. `lambda g: criterion_plan(g, "bn_gamma", ratio=0.6)`); it is re-made every
    `interval` batches, so channels can trade places while they fade. At batch s of the
    `fade_steps` (None: `fade_share` of the fit's remaining batches), each selected γ is
    scaled by (S − s)/(S − s_prev): a straight line from its value to 0 at batch S
    (s counts optimizer steps, so steps_per_execution > 1 works too). Afterwards
    the selection is frozen and its γ and β are held at 0, so the rest of fit adapts to the
    pruned network. Works on plain and Slim BatchNormalization; needs no λ. fade_beta=False
    leaves β alone (the removed channels then emit act(β), folded by rebuild).

    The ramp's clock is the optimizer's iteration count minus `start_step` (None: its
    count when fit starts). Pass start_step=0 with a fresh optimizer to let a resumed fit
    (optimizer restored from a checkpoint) continue the ramp where it stopped; a
    start_step ahead of the count delays the fade: γ is left alone until then, and the
    selection is made afresh when the ramp starts.
    """

    def __init__(self, plan_fn, fade_share=DEFAULT_FADE_SHARE, fade_steps=None, interval=50,
                 start_step=None, fade_beta=True, verbose=1):
        super().__init__()
        if not callable(plan_fn):
            raise ValueError(f"GammaFade: plan_fn must be callable (graph -> ChannelPlan). "
                             f"Received: {plan_fn!r}")
        if not 0.0 < float(fade_share) <= 1.0:
            raise ValueError(f"GammaFade: fade_share must be in (0, 1]. Received: "
                             f"{fade_share!r}")
        for name, value, low in (("fade_steps", fade_steps, 1), ("interval", interval, 1),
                                 ("start_step", start_step, 0)):
            if value is not None and (not isinstance(value, int) or value < low):
                raise ValueError(f"GammaFade: {name} must be an integer >= {low}. "
                                 f"Received: {value!r}")
        self.plan_fn, self.fade_share = plan_fn, float(fade_share)
        self.fade_steps, self.interval, self.verbose = fade_steps, interval, verbose
        if not isinstance(fade_beta, bool):
            raise ValueError(f"GammaFade: fade_beta must be True or False. Received: "
                             f"{fade_beta!r}")
        self.start_step, self.fade_beta = start_step, fade_beta
        self.plan, self.step = None, 0

    def on_train_begin(self, logs=None):
        model = student_of(self.model)  # a distiller's fit fades its student
        self._graph = ChannelGraph(model)
        self._bn = {path: layer for path, layer in iter_layers(model)
                    if is_bn(layer) and layer.scale}
        iterations = self._iterations()
        self._start = iterations if self.start_step is None else self.start_step
        self.step = iterations - self._start  # < 0 while a later start_step waits
        self._total, self._last_selection = self.fade_steps, self.step
        self._select()

    def _iterations(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        if self._total is None:  # the fit's remaining epochs (initial_epoch counts)
            per_epoch = self.params.get("steps")
            if not per_epoch:
                raise ValueError(
                    "GammaFade: the training data's length is unknown, so the fade cannot "
                    "be spread over it. Give the dataset a known length (e.g. "
                    "dataset.apply(tf.data.experimental.assert_cardinality(n))), pass "
                    "fade_steps= to GammaFade, or use fade=False with a λ.")
            left = per_epoch * (self.params.get("epochs", 1) - epoch)
            waiting = max(-self.step, 0)
            self._total = max(int(self.fade_share * (left - waiting)) + max(self.step, 0), 1)

    def _select(self):
        self.plan = self.plan_fn(self._graph)
        removed = np.array(sorted(self.plan.removed_roots(self._graph)))
        self._masks = {}
        for path, layer in self._bn.items():
            hit = np.isin(self._graph.channel_roots(path), removed)
            if hit.any():
                self._masks[path] = hit

    def on_train_batch_end(self, batch, logs=None):
        # the optimizer's count, not callback calls: steps_per_execution > 1 calls less
        before, self.step = self.step, self._iterations() - self._start
        if self.step < 0:
            return  # start_step not reached yet
        if before < 0:  # the ramp starts now: choose from the γ as they are
            self._select()
            self._last_selection = before = 0
        if before >= self._total:
            factor = 0.0  # the selection is frozen and held at 0
        else:
            if self.interval and self.step - self._last_selection >= self.interval:
                self._select()
                self._last_selection = self.step
            # (S - s)/(S - s0) telescopes to a straight line reaching 0 at step S
            factor = max(self._total - self.step, 0) / (self._total - before)
        self._scale(factor)
        if before < self._total <= self.step and self.verbose:
            print(f"\nGammaFade: {self.faded_channels} BN channels at γ = β = 0 after "
                  f"{self._total} batches")

    def settle(self, model):
        """The plan whose channels faded, their γ (and β) set to exactly 0 — also after a
        fit that ran no batch (a run resumed from a checkpoint taken at its last step,
        saved before this callback's last step zeroed them)."""
        if self.plan is None:
            self.set_model(model)
            self.on_train_begin()
        self._scale(0.0)
        return self.plan

    def _scale(self, factor):
        """Multiply the selected γ (and β) by `factor`, leaving the others as they are."""
        for path, hit in self._masks.items():
            layer = self._bn[path]
            faded = [layer.gamma] + ([layer.beta] if self.fade_beta and layer.center else [])
            for variable in faded:
                value = np.asarray(variable)
                variable.assign(np.where(hit, value * factor, value).astype(value.dtype))

    @property
    def faded_channels(self):
        return sum(int(m.sum()) for m in self._masks.values())

    def on_train_end(self, logs=None):
        if self.step < self._total:
            done = max(self.step, 0)
            warnings.warn(
                f"GammaFade: fit ended after {done} of the {self._total} fade steps; "
                f"the {self.faded_channels} channels to remove keep "
                f"{1 - done / self._total:.0%} of their γ, so removing them changes "
                "the model. Train longer or lower fade_share / fade_steps.", stacklevel=2)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["faded_channels"] = float(self.faded_channels)
