"""Network Slimming (Liu et al., ICCV 2017): sparsify BN scale factors, prune by |γ|.

Workflow::

    slim = slimmable(model, l1=1e-4)          # every BN -> SlimBatchNormalization
    slim.compile(...)
    slim.fit(..., callbacks=[L1Schedule(lambda e: 1e-4 * min(1, (e + 1) / 5))])
    print(sparsity_summary(slim)["overall"])
    plan = gamma_plan(slim, 0.5)              # global |γ| percentile -> ChannelPlan
    small = rebuild(strip(slim), plan)        # strip: plain BN for deployment

Exact zeros: `slimmable(model, l1, proximal=True)` and the `ProximalL1` callback apply
the penalty as a soft-threshold step after each optimizer step. `normalize=True` makes it
λ·mean|γ|; `GrowingL1` grows λ until a target share of γ is near zero. For a trained
model, `GammaFade` needs no λ: it fades only the channels the prune will remove to 0.

The penalty λ·Σ|γ| is added with `add_loss` on every call (like a weight regularizer,
so it is also part of the `evaluate` loss). λ lives in a non-trainable weight of each
layer, read inside the traced step, so `set_l1` / `L1Schedule` change it without
recompiling.
"""
from keras_slim.slimming.callbacks import (GammaLogger, GrowingL1, L1Schedule, ProximalL1,
                                           SparsityPenalty, set_l1, sparsity_penalty)
from keras_slim.slimming.convert import slimmable, strip
from keras_slim.slimming.fade import GammaFade
from keras_slim.slimming.layer import SlimBatchNormalization, bn_weights, slim_layers
from keras_slim.slimming.scores import dry_run, gamma_plan, gamma_scores, sparsity_summary

__all__ = ["GammaFade", "GammaLogger", "GrowingL1", "L1Schedule", "ProximalL1", "SlimBatchNormalization", "SparsityPenalty",
           "bn_weights", "dry_run", "gamma_plan", "gamma_scores", "set_l1", "slim_layers",
           "slimmable", "sparsity_penalty", "sparsity_summary", "strip"]
