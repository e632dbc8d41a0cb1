"""The Network Slimming loop: sparsity training → γ plan → rebuild → fine-tune (Liu et
al., ICCV 2017, Fig. 2), as one call and as the steps it is made of. With passes > 1 it
is the paper's iterative scheme: each pass prunes `ratio` of the channels still there.
"""
import warnings
from dataclasses import dataclass, field


from keras_slim.core import criteria, metrics
from keras_slim import slimming
from keras_slim.compat import ensure_model, keras
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import rebuild
from keras_slim.training import distillation
from keras_slim.training.anneal import cosine_anneal
from keras_slim.training.distillation import DEFAULT_ALPHA, DEFAULT_TEMPERATURE


def default_compile(model, learning_rate=0.05):
    """SGD with momentum and logits cross-entropy, as the paper trains its nets."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def sparsity_train(model, train_data, epochs, l1=1e-4, compile_fn=default_compile,
                   validation_data=None, callbacks=(), verbose=1, gamma_log_dir=None,
                   proximal=False, normalize=False, grow_to=None, teacher=None,
                   temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA):
    """Train a SlimBN copy of `model` with λ·Σ|γ|; returns (slim model, history).

    proximal=True: the penalty is a soft-threshold step after each optimizer step
    (`ProximalL1`), so unimportant γ end exactly 0. normalize=True: λ multiplies the
    mean |γ| instead of the sum (one λ for any width). grow_to=share: λ starts at `l1`
    and grows until that share of |γ| is below 1e-2, then holds (`GrowingL1`, watching
    val_accuracy when validation_data is given). teacher: train by distillation from it
    (frozen, logits out; the callbacks act on the SlimBN copy).
    """
    slim = slimming.slimmable(model, l1=l1, normalize=normalize, proximal=proximal)
    compile_fn(slim)
    l1_control = (slimming.L1Schedule(l1) if grow_to is None else
                  slimming.GrowingL1(l1, grow_to, monitor="val_accuracy"))
    cbs = [l1_control, slimming.GammaLogger(gamma_log_dir, verbose=verbose)]
    if proximal:
        cbs.append(slimming.ProximalL1())
    if not epochs:  # tf_keras refuses fit(epochs=0)
        return slim, {}
    trainer = slim
    if teacher is not None:
        trainer = distillation.distiller(slim, teacher, temperature, alpha)
        compile_fn(trainer)
    history = trainer.fit(train_data, epochs=epochs, validation_data=validation_data,
                          callbacks=cbs + list(callbacks), verbose=verbose)
    return slim, history.history


def prune(model, ratio, scope="global", compensate=True, graph=None, calibration_data=None,
          plan=None, **plan_kwargs):
    """γ plan at `ratio` (or the given `plan`, e.g. GammaFade's) and the rebuilt model;
    returns (model, plan, report), the model analysed once for all three.

    With compensate=True the removed channels, whose γ sparsity training made small,
    are taken to emit act(β) and folded into their consumers (see rebuild); with
    calibration_data, their mean output over those batches is folded instead.
    graph: the model's ChannelGraph if the caller has one.
    """
    graph = graph if graph is not None else ChannelGraph(model)
    if plan is None:
        pruned, plan = criteria.prune(model, "bn_gamma", ratio, compensate=compensate,
                                      graph=graph, scope=scope,
                                      calibration_data=calibration_data, **plan_kwargs)
    else:
        tolerance = criteria.removed_gamma_max(model, plan, graph) \
            if compensate and calibration_data is None else 0.0
        if tolerance > 0:
            warnings.warn(f"the given plan removes channels with |γ| up to {tolerance:.3g}, "
                          "not 0: the pruned model differs from this one (was the fade "
                          "cut short?).", stacklevel=2)
        pruned = rebuild(model, plan, compensate=compensate, gamma_tolerance=tolerance,
                         graph=graph, calibration_data=calibration_data)
    return pruned, plan, metrics.compare(metrics.profile(graph), pruned)


def finetune(model, train_data, epochs, compile_fn=default_compile, validation_data=None,
             callbacks=(), verbose=1, teacher=None, temperature=DEFAULT_TEMPERATURE,
             alpha=DEFAULT_ALPHA, anneal=True):
    """Fine-tune without the sparsity term (λ = 0 on any SlimBN left); with a `teacher`
    (frozen, logits out), by distillation (keras_slim.training.distillation). anneal:
    a constant learning rate decays to 0 over the fit (keras_slim.training.anneal; a
    compile_fn with a schedule, or a learning-rate callback, keeps its own)."""
    if slimming.slim_layers(model):
        slimming.set_l1(model, 0.0)
    compile_fn(model)
    if not epochs:  # tf_keras refuses fit(epochs=0)
        return model, {}
    trainer = model
    if teacher is not None:
        trainer = distillation.distiller(model, teacher, temperature, alpha)
        compile_fn(trainer)
    annealed = anneal and cosine_anneal(trainer.optimizer, train_data, epochs, callbacks)
    history = trainer.fit(train_data, epochs=epochs, validation_data=validation_data,
                          callbacks=list(callbacks), verbose=verbose)
    if annealed and trainer is model:
        compile_fn(model)  # its schedule has run out: train on at the compiled rate
    return model, history.history


@dataclass
class SlimmingResult:
    model: object                       # pruned, fine-tuned, plain-BN model
    plans: list = field(default_factory=list)
    reports: list = field(default_factory=list)       # metrics.compare per pass
    histories: list = field(default_factory=list)     # (phase, history) in order
    after_rebuild: list = field(default_factory=list)  # per pass: accuracy before FT
    sparsity: list = field(default_factory=list)      # per pass: slimming.sparsity_summary

    @property
    def report(self):
        """Params/FLOPs of the final model against the original one."""
        first, last = self.reports[0], self.reports[-1]
        return {"params_before": first["params_before"], "params_after": last["params_after"],
                "macs_before": first["macs_before"], "macs_after": last["macs_after"],
                "params_ratio": first["params_before"] / max(last["params_after"], 1),
                "macs_ratio": first["macs_before"] / max(last["macs_after"], 1)}


def network_slimming(model, train_data, sparsity_epochs, finetune_epochs, ratio, l1=1e-4,
                     passes=1, scope="global", compile_fn=default_compile,
                     validation_data=None, verbose=1, gamma_log_dir=None, proximal=False,
                     normalize=False, grow_l1=False, fade=False, calibration_data=None,
                     distill=False, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA,
                     finetune_compile_fn=None, **plan_kwargs):
    """The whole loop; `model` is not changed. Returns a SlimmingResult.

    proximal / normalize: see sparsity_train; grow_l1=True grows λ from `l1` until the
    share `ratio` of γ is near zero (sparsity_train(grow_to=ratio)). fade=True: the γ and
    β of the channels this pass's plan removes fade to exactly 0 during sparsity training
    (`GammaFade`; no λ needed, pass l1=0 for the fade alone). calibration_data:
    batches whose per-channel means replace the removed channels (rebuild's data-aware
    compensation) instead of assuming γ = 0. distill: fine-tune each pass by
    distillation from that pass's sparsity-trained model (with fade=True, from the model
    the pass started from, since the fade already made the sparse model the pruned one;
    `temperature`, `alpha`: see keras_slim.training.distillation.distiller).

    finetune_compile_fn: compiles the pruned model for fine-tuning (None: compile_fn).

    With validation_data, the accuracy right after each rebuild (before fine-tuning) is
    recorded with and without bias compensation.
    """
    ensure_model(model)
    if not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive integer, got {passes!r}.")
    result = SlimmingResult(model=None)
    current = model
    if not isinstance(fade, bool):
        raise ValueError(f"fade must be True or False. Received: {fade!r}")
    for _ in range(passes):
        # the prune removes what faded (a re-made plan can differ where floors bind)
        fader = slimming.GammaFade(_fade_plan(ratio, scope, plan_kwargs), verbose=verbose) \
            if fade and sparsity_epochs else None
        # the fade learns from the labels: distilled from `current` it ended lower
        # (benchmarks/results/slimming_own_net.md)
        slim, hist = sparsity_train(current, train_data, sparsity_epochs, l1, compile_fn,
                                    validation_data, verbose=verbose,
                                    gamma_log_dir=gamma_log_dir, proximal=proximal,
                                    normalize=normalize, grow_to=ratio if grow_l1 else None,
                                    callbacks=[fader] if fader else ())
        result.histories.append(("sparsity", hist))
        result.sparsity.append(slimming.sparsity_summary(slim))
        graph = ChannelGraph(slim)  # one analysis for plan, rebuilds and report
        pruned, plan, report = prune(slim, ratio, scope, graph=graph,
                                     calibration_data=calibration_data,
                                     plan=fader.plan if fader else None, **plan_kwargs)
        result.plans.append(plan)
        result.reports.append(report)
        if validation_data is not None:
            plain = rebuild(slim, plan, compensate=False, graph=graph)  # the NS repo's way
            result.after_rebuild.append({
                "compensated": _accuracy(pruned, validation_data, compile_fn),
                "uncompensated": _accuracy(plain, validation_data, compile_fn)})
        # the fade already made the sparse model the pruned one: teach with the pass's input
        teacher = distillation.frozen_copy(current if fader else slimming.strip(slim)) \
            if distill else None
        current, hist = finetune(slimming.strip(pruned), train_data, finetune_epochs,
                                 finetune_compile_fn or compile_fn, validation_data,
                                 verbose=verbose, teacher=teacher, temperature=temperature,
                                 alpha=alpha)
        result.histories.append(("finetune", hist))
    result.model = current
    return result


def _fade_plan(ratio, scope, plan_kwargs):
    """The γ plan `prune` will make, as GammaFade's plan_fn (graph -> ChannelPlan)."""
    if plan_kwargs.get("measure_latency"):
        raise ValueError("fade=True cannot follow measure_latency=True (that plan is "
                         "chosen by timing rebuilt models); use the latency table's "
                         "prediction (measure_latency=False) or fade=False.")
    kwargs = {k: v for k, v in plan_kwargs.items() if k != "verbose"}
    return lambda graph: criteria.criterion_plan(graph, "bn_gamma", ratio, scope=scope,
                                                 **kwargs)


def _accuracy(model, data, compile_fn):
    compile_fn(model)
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])
