"""GammaFade: fade the γ of the channels the prune will remove to exactly 0 while the
model trains, leaving every other γ alone.

For a trained model this replaces the uniform L1 penalty, whose λ has to fit the
model's width, depth and learning rate (a λ that sparsifies one net in an epoch leaves
another untouched or at chance). It follows growing regularization (Wang et al., ICLR
2021; Torch-Pruning's GrowingRegPruner): only the channels selected for removal are
pushed to zero, gradually, so the rest of the network learns to do without them and the
prune that follows removes exact zeros (rebuild's constant folding is then exact).
"""
import numpy as np

from keras_slim.compat import keras
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.walk import iter_layers
from keras_slim.slimming.layer import is_bn

DEFAULT_FADE_SHARE = 0.75  # of the training batches; the rest adapts to the pruned net


class GammaFade(keras.callbacks.Callback):
    """Ramps the γ of the channels `plan_fn` removes linearly down to exactly 0.

    plan_fn(graph) -> ChannelPlan: the plan the prune step will make from the current γ
    (e.g. `lambda g: criterion_plan(g, "bn_gamma", ratio=0.6)`); it is re-made every
    `interval` batches, so channels can trade places while they fade. At batch s of the
    `fade_steps` (None: `fade_share` of the fit's batches), each selected γ is scaled
    by (S − s − 1)/(S − s): a straight line from its value to 0 at batch S. Afterwards
    the selection is frozen and its γ are held at 0, so the rest of fit adapts to the
    pruned network. Works on plain and Slim BatchNormalization; needs no λ.

    The ramp's clock is the optimizer's iteration count minus `start_step` (None: its
    count when fit starts). Pass start_step=0 with a fresh optimizer to let a resumed fit
    (optimizer restored from a checkpoint) continue the ramp where it stopped.
    """

    def __init__(self, plan_fn, fade_share=DEFAULT_FADE_SHARE, fade_steps=None, interval=50,
                 start_step=None, verbose=1):
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
        self.start_step = start_step
        self.plan, self.step = None, 0

    def on_train_begin(self, logs=None):
        steps = self.fade_steps
        if steps is None:
            per_epoch, epochs = self.params.get("steps"), self.params.get("epochs")
            if not per_epoch:
                raise ValueError("GammaFade: the dataset's length is unknown; pass "
                                 "fade_steps= (the batches over which γ fade to 0).")
            steps = max(int(self.fade_share * per_epoch * epochs), 1)
        self._total = steps
        self._graph = ChannelGraph(self.model)
        self._bn = {path: layer for path, layer in iter_layers(self.model)
                    if is_bn(layer) and layer.scale}
        iterations = int(self.model.optimizer.iterations.numpy())
        start = iterations if self.start_step is None else self.start_step
        self.step = max(iterations - start, 0)
        self._select()

    def _select(self):
        self.plan = self.plan_fn(self._graph)
        removed = np.array(sorted(self.plan.removed_roots(self._graph)))
        self._masks = {}
        for path, layer in self._bn.items():
            hit = np.isin(self._graph.channel_roots(path), removed)
            if hit.any():
                self._masks[path] = hit

    def on_train_batch_end(self, batch, logs=None):
        fading = self.step < self._total
        if fading and self.interval and self.step and self.step % self.interval == 0:
            self._select()
        factor = (self._total - self.step - 1) / (self._total - self.step) if fading else 0.0
        for path, hit in self._masks.items():
            gamma = self._bn[path].gamma
            value = np.asarray(gamma)
            gamma.assign(np.where(hit, value * factor, value).astype(value.dtype))
        self.step += 1
        if self.step == self._total and self.verbose:
            print(f"\nGammaFade: {sum(int(m.sum()) for m in self._masks.values())} BN "
                  f"channels at γ = 0 after {self._total} batches")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["faded_channels"] = float(sum(int(m.sum()) for m in self._masks.values()))
