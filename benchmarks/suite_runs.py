"""Training runs that several parts of the suite use, cached per suite run.

The slimming rows and the NS analysis share one sparsity-trained model per (model, λ);
the DCE rows and the DCE accuracy-vs-p analysis share the seed-0 CUCB runs. A part run
alone (suite.py --only) trains what it needs itself, with the same settings.
"""
import time

from benchmarks.common import accuracy, cosine_compile
from benchmarks.dce_fashion_mnist import baseline_row, dce_row
from keras_slim import slimming
from keras_slim.compat import keras
from keras_slim.slimming.pipeline import default_compile, finetune, prune, sparsity_train


def _cached(ctx, key, make):
    if key not in ctx.memo:
        ctx.memo[key] = make()
    return ctx.memo[key]


def baseline(ctx, name, seed):
    """The unpruned model trained epochs + finetune_epochs; a baseline_row dict + model."""
    b = ctx.budget
    return _cached(ctx, ("baseline", name, seed), lambda: baseline_row(
        ctx.initial(name, seed), ctx.builder(name), ctx.train, ctx.test, seed,
        b.epochs + b.finetune_epochs, 0, keep_model=True))


def dce(ctx, name, fraction, policy, seed):
    """DCE training → compact model → fine-tune; a dce_row dict + model."""
    b = ctx.budget
    return _cached(ctx, ("dce", name, fraction, policy, seed), lambda: dce_row(
        ctx.initial(name, seed), ctx.builder(name), ctx.train, ctx.test, fraction, policy,
        seed, b.epochs, b.finetune_epochs, b.dce_warmup_steps, 0, keep_model=True))


def sparsity_model(ctx, name, l1, seed=0):
    """(SlimBN model after `epochs` of sparsity training at λ = l1, seconds)."""
    def make():
        keras.utils.set_random_seed(seed)
        model = ctx.build(name)
        model.set_weights(ctx.initial(name, seed))
        start = time.time()
        slim, _ = sparsity_train(model, ctx.train, ctx.budget.epochs, l1=l1,
                                 compile_fn=cosine_compile(ctx.steps * ctx.budget.epochs),
                                 verbose=0)
        return slim, time.time() - start
    return _cached(ctx, ("sparsity", name, float(l1), seed), make)


def compiled_accuracy(model, test):
    """Test accuracy of a model that may not be compiled yet."""
    return accuracy(default_compile(model), test)


def prune_and_finetune(ctx, slim, ratio, epochs, uncompensated=True):
    """Global-|γ| prune of a sparsity-trained model, rebuild, fine-tune `epochs`.

    Returns {"model", "report", "after_rebuild": {"compensated", "uncompensated"},
    "accuracy", "seconds"} (seconds: prune + rebuild + evaluations + fine-tuning).
    """
    start = time.time()
    pruned, plan, report = prune(slim, ratio)
    after = {"compensated": compiled_accuracy(pruned, ctx.test)}
    if uncompensated:
        plain, _, _ = prune(slim, ratio, compensate=False)
        after["uncompensated"] = compiled_accuracy(plain, ctx.test)
    model, _ = finetune(slimming.strip(pruned), ctx.train, epochs,
                        compile_fn=cosine_compile(ctx.steps * epochs), verbose=0)
    return {"model": model, "plan": plan, "report": report, "after_rebuild": after,
            "accuracy": accuracy(model, ctx.test), "seconds": time.time() - start}


def train_from_scratch(ctx, architecture, seed, epochs):
    """`architecture` re-initialised (clone_model makes new weights from the config's
    initialisers) and trained `epochs` like the baseline. Returns (model, acc, seconds)."""
    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(architecture)
    start = time.time()
    cosine_compile(ctx.steps * epochs)(model)
    model.fit(ctx.train, epochs=epochs, verbose=0)
    acc = accuracy(model, ctx.test)
    return model, acc, time.time() - start
