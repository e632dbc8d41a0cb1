"""One call from a Keras model and data to a pruned, fine-tuned model:

    import keras_slim as ks
    result = ks.slim(model, train_ds, method="slimming", ratio=0.5, validation_data=val_ds,
                     pretrained=True)
    ks.export_tflite(result.model, "int8", representative_data=x[:200], output_path="m.tflite")

It wraps the per-step API (keras_slim.slimming.pipeline.network_slimming,
keras_slim.core.criteria.prune + fine-tune, keras_slim.dce.run_dce), which stays.
"""
import inspect
from dataclasses import dataclass, field

from keras_slim import compat
from keras_slim.compat import keras
from keras_slim.core import criteria, metrics
from keras_slim.training import distillation
from keras_slim.training.distillation import DEFAULT_ALPHA, DEFAULT_TEMPERATURE

__all__ = ["slim", "SlimResult", "defaults", "METHODS"]

METHODS = ("slimming", "dce", "l1")

# From scratch the sparsity phase also trains the net; a pretrained net (ImageNet, or
# the user's trained model) needs only to push γ apart, and a high lr or λ would wipe
# what it knows. The apps' --pretrained applies the same table.
# A trained model gets no λ: GammaFade fades the channels the prune will remove, which
# needs no per-model tuning (one λ sparsified one net and left another untouched).
# Without the fade, a trained model gets a 10× lower λ than training from scratch.
# A trained model fades at a low rate (at 0.02 instead of 0.005 the faded own net fell
# to 78% instead of 87% for the same end point) and the pruned net, a new smaller one,
# fine-tunes longer at a higher rate (benchmarks/results/slimming_own_net.md).
_DEFAULTS = {
    False: {"epochs": 2, "l1": 5e-3, "learning_rate": 0.05, "fade": False,
            "finetune_epochs": 1, "finetune_learning_rate": None},  # None: learning_rate
    True: {"epochs": 1, "l1": 0.0, "learning_rate": 0.005, "fade": True,
           "finetune_epochs": 3, "finetune_learning_rate": 0.02},
}
_PRETRAINED_L1_WITHOUT_FADE = 5e-4


def defaults(pretrained, fade=None):
    """{sparsity epochs, λ, learning rate, fade, fine-tune epochs and learning rate} suited
    to a pretrained model or to training from scratch (names as the apps' flags);
    fade=True/False overrides the fade, and λ follows it (no λ with the fade)."""
    settings = dict(_DEFAULTS[bool(pretrained)])
    if fade is not None and fade != settings["fade"]:
        settings["fade"] = bool(fade)
        settings["l1"] = 0.0 if fade else (_PRETRAINED_L1_WITHOUT_FADE if pretrained
                                           else _DEFAULTS[False]["l1"])
    return settings


@dataclass
class SlimResult:
    model: object                 # pruned, fine-tuned Keras model
    plan: object                  # the ChannelPlan applied (the last pass's)
    report: dict                  # params / MACs before and after (+ accuracy)
    method: str
    histories: list = field(default_factory=list)   # (phase, history dict) in order


def _compile_fn(learning_rate):
    from keras_slim.slimming.pipeline import default_compile

    return lambda model: default_compile(model, learning_rate)


def _accuracy(model, data):
    if data is None:
        return None
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


# run_dce's arguments that slim() sets itself; the others pass through its **kwargs
_DCE_SET_BY_SLIM = {"model", "train_data", "fraction", "epochs", "finetune_epochs", "loss",
                    "optimizer", "metrics", "round_to", "verbose", "distill", "temperature",
                    "alpha"}


def _check_dce_options(run_dce, options):
    """A plan option DCE has no use for (scope, normalizer, ...) is an error, not ignored."""
    accepted = set(inspect.signature(run_dce).parameters) - _DCE_SET_BY_SLIM
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"method='dce' does not take {', '.join(unknown)} (its plan keeps "
                         f"1 - ratio of every gated group); it takes "
                         f"{', '.join(sorted(accepted))}.")


def slim(model, train_data, method="slimming", ratio=0.5, target=None,
         validation_data=None, distill=True, temperature=DEFAULT_TEMPERATURE,
         alpha=DEFAULT_ALPHA, pretrained=False, sparsity_epochs=None, finetune_epochs=None,
         l1=None, learning_rate=None, finetune_learning_rate=None, fade=None, round_to=8,
         verbose=1, **plan_kwargs):
    """Prune `model` and fine-tune it; `model` is not changed. Returns a SlimResult.

    method: "slimming" (γ-L1 sparsity training, prune by |γ|), "l1" (prune by filter L1
        norm, no sparsity phase: the quickest for a trained model) or "dce" (Dynamic
        Channel Execution, keeping 1 - ratio of every gated group).
    ratio: share of channels to remove; target: a cost target ({"macs": 0.5}, ...) handed
        to keras_slim.core.criteria.prune instead (when given).
    train_data, validation_data: tf.data datasets of (images, integer labels) batches;
        the model outputs logits.
        With validation_data the report holds accuracy_before / accuracy_after, and
        for "slimming" and "l1" accuracy_pruned (right after pruning, before
        fine-tuning); "slimming" also accuracy_sparse (after sparsity training).
    distill: fine-tune by distillation from the unpruned model (slimming without the
        fade: the sparsity-trained one), with `temperature` and `alpha`
        (keras_slim.training.distillation). "slimming" and "l1" fine-tune with the
        learning rate cosine-decayed to 0 (keras_slim.training.anneal).
    pretrained: pick defaults() for a trained model (1 sparsity epoch at a 10× lower
        learning rate with no λ: the channels to remove fade to γ = β = 0, `GammaFade`;
        fine-tuning longer at a higher rate than the fade) instead of from scratch (2
        epochs of γ-L1, λ 5e-3, then 1 fine-tune epoch); sparsity_epochs,
        finetune_epochs, l1, learning_rate, finetune_learning_rate and fade override
        them; a learning_rate given alone is used for the fine-tune too. "dce" trains
        and fine-tunes at learning_rate. Other keyword arguments go to the plan (scope,
        min_fraction, normalizer="mean" to rank |γ| against each layer's mean, ...);
        `normalize` (slimming) is another thing: the penalty λ·mean|γ|. With "dce" they
        go to keras_slim.dce.run_dce (warmup_steps, policy, seed, ...); others are refused.
    """
    compat.ensure_model(model)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}. Received: {method!r}")
    if fade is None and plan_kwargs.get("measure_latency"):
        fade = False  # that plan is found by timing rebuilt models, not known in advance
    settings = defaults(pretrained, fade)
    epochs = settings["epochs"] if sparsity_epochs is None else sparsity_epochs
    if finetune_epochs is None:
        finetune_epochs = settings["finetune_epochs"]
    l1 = settings["l1"] if l1 is None else l1
    fade = settings["fade"]
    if finetune_learning_rate is not None and method == "dce":
        raise ValueError("finetune_learning_rate is not available with method='dce' "
                         "(run_dce trains and fine-tunes with one optimizer); use "
                         "learning_rate=.")
    if finetune_learning_rate is None:  # a rate the caller gave drives both phases
        finetune_learning_rate = learning_rate if learning_rate is not None else (
            settings["finetune_learning_rate"] or settings["learning_rate"])
    learning_rate = settings["learning_rate"] if learning_rate is None else learning_rate
    compile_fn = _compile_fn(learning_rate)
    finetune_compile_fn = _compile_fn(finetune_learning_rate)
    if target is not None:  # criteria.prune's cost target replaces the ratio
        plan_kwargs["target"], ratio = target, None
    distill_args = dict(distill=distill, temperature=temperature, alpha=alpha)
    stages = {}  # accuracy after sparsity training / right after pruning, if measured

    if method == "slimming":
        from keras_slim.slimming.pipeline import network_slimming

        result = network_slimming(model, train_data, epochs, finetune_epochs, ratio, l1,
                                  compile_fn=compile_fn, verbose=verbose,
                                  finetune_compile_fn=finetune_compile_fn,
                                  validation_data=validation_data, round_to=round_to,
                                  fade=fade, **distill_args, **plan_kwargs)
        small, plan, histories = result.model, result.plans[-1], result.histories
        if validation_data is not None:  # where the accuracy went, phase by phase
            stages["accuracy_pruned"] = result.after_rebuild[-1]["compensated"]
            sparse = dict(histories)["sparsity"].get("val_accuracy")
            if sparse:  # none with sparsity_epochs=0
                stages["accuracy_sparse"] = sparse[-1]
    elif method == "l1":
        from keras_slim.slimming.pipeline import finetune

        small, plan = criteria.prune(model, "l1_norm", ratio, round_to=round_to,
                                     **plan_kwargs)
        if validation_data is not None:
            stages["accuracy_pruned"] = _accuracy(compile_fn(small), validation_data)
        teacher = distillation.frozen_copy(model) if distill else None
        small, history = finetune(small, train_data, finetune_epochs, finetune_compile_fn,
                                  verbose=verbose, teacher=teacher, temperature=temperature,
                                  alpha=alpha)
        histories = [("finetune", history)]
    else:
        from keras_slim.dce.pipeline import run_dce

        if ratio is None:
            raise ValueError("target= is not available with method='dce' (its plan keeps "
                             "1 - ratio of every gated group); use ratio=.")
        _check_dce_options(run_dce, plan_kwargs)
        result = run_dce(model, train_data, fraction=1.0 - ratio, epochs=epochs,
                         finetune_epochs=finetune_epochs,
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                         metrics=["accuracy"], round_to=round_to, verbose=verbose,
                         **distill_args, **plan_kwargs)
        small, plan = result.model, result.plan
        histories = [(phase, h.history) for phase, h in
                     (("dce", result.history), ("finetune", result.finetune_history)) if h]
        compile_fn(small)
    report = metrics.compare(metrics.profile(model), small)
    if validation_data is not None:
        compile_fn(model_copy := distillation.frozen_copy(model))
        report.update(accuracy_before=_accuracy(model_copy, validation_data),
                      accuracy_after=_accuracy(small, validation_data), **stages)
    return SlimResult(small, plan, report, method, histories)
