"""DCE end to end: bandit saliencies -> ChannelPlan, and the one-call pipeline
gate -> fit with CUCBCallback -> plan -> strip gates -> rebuild -> fine-tune."""
import json
import os
from dataclasses import dataclass

import numpy as np

from keras_slim import compat
from keras_slim.compat import keras
from keras_slim.core.batch_norm_statistics import recalibrate_batch_norm
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import plan_from_scores
from keras_slim.core.rebuild import rebuild
from keras_slim.dce.bandit import CUCB, _is_int
from keras_slim.dce.callback import _STATE_FORMAT, CUCBCallback, _check_fraction
from keras_slim.dce.gates import gate_model, gates_of, strip_gates
from keras_slim.training import distillation
from keras_slim.training.distillation import DEFAULT_ALPHA, DEFAULT_TEMPERATURE


def _bandits_of(source):
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source) as f:
                source = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"bandit state file {str(source)!r} cannot be read: {e}") \
                from None
    if isinstance(source, CUCBCallback):
        return source.bandits
    if isinstance(source, dict):
        if source.get("format") == _STATE_FORMAT:
            source = source["bandits"]
        return {n: b if isinstance(b, CUCB) else CUCB.from_state(b)
                for n, b in source.items()}
    raise ValueError(f"source must be a CUCBCallback, its get_state() or a dict "
                     f"{{group: CUCB or CUCB state}}, got {type(source).__name__}.")


def dce_plan(source, model, keep_fraction, round_to=8, graph=None, **kwargs):
    """A ChannelPlan keeping the `keep_fraction` most salient channels (by the bandits'
    mean saliency) of every gated group; ungated groups stay whole.

    `model` is the plain model or the gated one (its gates are stripped first); layer
    and group names are the same in both. Channels never played rank last. Extra
    keyword arguments go to keras_slim.core.plan.plan_from_scores. `source` may also be
    the path of a saved bandit state (bandit.json); `graph`, the plain model's
    ChannelGraph if the caller has one.
    """
    _check_fraction(keep_fraction, "keep_fraction")
    bandits = _bandits_of(source)
    if not bandits:
        raise ValueError("source holds no bandit: train with CUCBCallback first.")
    compat.ensure_model(model)
    plain = strip_gates(model) if gates_of(model) else model
    if graph is None or graph.model is not plain:
        graph = ChannelGraph(plain)
    groups = {g.name: g for g in graph.groups}
    scores = {}
    for name, bandit in bandits.items():
        group = groups.get(name)
        if group is None or group.size != bandit.num_arms:
            raise ValueError(f"bandit group {name!r} ({bandit.num_arms} channels) does not "
                             f"match model {plain.name!r}. Was it trained on another model?")
        # Rewards are >= 0, so -1 puts channels with no observation below all others.
        values = np.where(bandit.T > 0, bandit.mu, -1.0)
        index = {int(r): j for j, r in enumerate(group.roots)}
        for path in group.layers:
            scores[path] = values[[index[int(r)] for r in graph.channel_roots(path)]]
    kwargs.setdefault("aggregate", "max")  # every member carries the same value
    meta = dict(kwargs.pop("meta", {}) or {}, criterion="dce_cucb",
                keep_fraction=keep_fraction)
    return plan_from_scores(graph, scores, 1.0 - keep_fraction, scope="layer",
                            round_to=round_to, meta=meta, **kwargs)


@dataclass
class DCEResult:
    model: object            # the compact, fine-tuned model
    plan: object             # ChannelPlan
    callback: CUCBCallback
    gated_model: object      # the trained gated model (all masks 1)
    history: object = None
    finetune_history: object = None
    recalibration_batches: int = 0  # batches that re-estimated BN statistics


def _fresh_optimizer(optimizer):
    if isinstance(optimizer, str):
        return keras.optimizers.get(optimizer)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        # An optimizer's slots belong to one model: each phase gets its own copy.
        return type(optimizer).from_config(optimizer.get_config())
    raise ValueError(f"optimizer must be a name or a keras optimizer, got "
                     f"{type(optimizer).__name__}.")


def _fit(model, data, epochs, batch_size, callbacks, verbose, steps_per_epoch):
    if isinstance(data, tuple) and len(data) == 2:
        return model.fit(data[0], data[1], epochs=epochs, batch_size=batch_size,
                         callbacks=callbacks, verbose=verbose, steps_per_epoch=steps_per_epoch)
    # A dataset or generator comes batched (and shuffled) by the caller.
    return model.fit(data, epochs=epochs, callbacks=callbacks, verbose=verbose,
                     steps_per_epoch=steps_per_epoch, shuffle=False)


def run_dce(model, train_data, fraction=0.5, epochs=1, finetune_epochs=1,
            keep_fraction=None, loss=None, optimizer="adam", metrics=None, layers=None,
            warmup_steps=100, exploration=1.0, policy="cucb", discount=None, seed=0,
            round_to=8, batch_size=32, steps_per_epoch=None, checkpoint=None, verbose=0,
            distill=False, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA,
            recalibration_steps=20):
    """Dynamic Channel Execution in one call; `model` is not changed.

    Gates the model (gate_model), trains it `epochs` epochs with CUCBCallback (p =
    `fraction` active per step), keeps the `keep_fraction` (default: `fraction`) most
    salient channels of every gated group (dce_plan), strips the gates, rebuilds the
    compact model, re-estimates its BN statistics on `recalibration_steps` training
    batches (0: keep those learnt with changing channels; see
    keras_slim.core.batch_norm_statistics) and fine-tunes it `finetune_epochs` epochs.
    A generator as train_data is advanced by those batches between the two fits.

    train_data: a tf.data.Dataset / generator of (x, y) batches, or an (x, y) tuple
    (batched with batch_size). loss defaults to the loss `model` was compiled with.
    distill: fine-tune by distillation from the DCE-trained model, gates stripped
    (`temperature`, `alpha`: see keras_slim.training.distillation.distiller).
    Returns a DCEResult.
    """
    compat.ensure_model(model)
    _check_fraction(fraction)
    keep_fraction = fraction if keep_fraction is None else keep_fraction
    _check_fraction(keep_fraction, "keep_fraction")
    for arg, value in (("epochs", epochs), ("finetune_epochs", finetune_epochs),
                       ("recalibration_steps", recalibration_steps)):
        if not _is_int(value) or value < 0:
            raise ValueError(f"{arg} must be an int >= 0, got {value!r}.")
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError("loss: model is not compiled; pass loss=... to run_dce.")
    callback = CUCBCallback(fraction, warmup_steps=warmup_steps, exploration=exploration,
                            policy=policy, discount=discount, seed=seed,
                            checkpoint=checkpoint)
    gated = gate_model(model, fraction, layers=layers)
    gated.compile(optimizer=_fresh_optimizer(optimizer), loss=loss, metrics=metrics)
    callback.attach(gated)
    history = _fit(gated, train_data, epochs, batch_size, [callback], verbose,
                   steps_per_epoch) if epochs else None
    callback.all_on()
    plain = strip_gates(gated)
    graph = ChannelGraph(plain)  # one analysis for plan and rebuild
    plan = dce_plan(callback, plain, keep_fraction, round_to=round_to, graph=graph)
    compact = rebuild(plain, plan, graph=graph)
    recalibrated = recalibrate_batch_norm(compact, train_data, recalibration_steps,
                                          batch_size) if recalibration_steps else 0
    compact.compile(optimizer=_fresh_optimizer(optimizer), loss=loss, metrics=metrics)
    trainer = compact
    if distill:
        trainer = distillation.distiller(compact, distillation.frozen_copy(plain),
                                         temperature, alpha)
        trainer.compile(optimizer=_fresh_optimizer(optimizer), loss=loss, metrics=metrics)
    finetune = _fit(trainer, train_data, finetune_epochs, batch_size, None, verbose,
                    steps_per_epoch) if finetune_epochs else None
    return DCEResult(compact, plan, callback, gated, history, finetune, recalibrated)
