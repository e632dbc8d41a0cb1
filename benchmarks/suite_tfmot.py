"""The "what a TF user picks today" row: tensorflow_model_optimization magnitude pruning.

tfmot's prune_low_magnitude wraps tf_keras layers only, and the suite runs on Keras 3
(the library's primary target). So this row runs in a child process with
TF_USE_LEGACY_KERAS=1: `run_tfmot_row` (called by the suite) writes the seed's initial
weights by layer name, runs this file, and reads back a JSON result and a .tflite.

The row: train `epochs` normally from the same initial weights as the baseline, then
prune_low_magnitude every Conv2D / Dense kernel (PolynomialDecay 0 → s over the first
70% of the fine-tuning steps) and fine-tune `finetune_epochs` with UpdatePruningStep,
strip_pruning, int8 post-training quantization. s is chosen so that the non-zero
parameter count equals a given target (the slimming-70% model's parameter count).

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.suite_tfmot --model vgg_small \
        --budget '{...}' --initial w.npz --target_params 28000 --out row.json --tflite m.tflite \
        --tflite_float32 m_float32.tflite
"""
import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import child_env, module_command  # noqa: E402


def save_initial(model, weights, path):
    """Weights of `model` after set_weights(weights), keyed by layer name and index."""
    model.set_weights(weights)
    arrays = {f"{layer.name}:{i}": w for layer in model.layers
              for i, w in enumerate(layer.get_weights())}
    np.savez(path, **arrays)


def run_tfmot_row(ctx, name, seed, target_params, workdir, tflite_path, float_path):
    """Run this file under tf_keras; returns its JSON result (see main). Writes the int8
    .tflite to tflite_path and a float32 one to float_path."""
    initial = os.path.join(workdir, f"{name}_seed{seed}_initial.npz")
    save_initial(ctx.build(name), ctx.initial(name, seed), initial)
    out = os.path.join(workdir, f"{name}_tfmot.json")
    cmd = module_command("suite_tfmot", "--model", name,
                         "--budget", json.dumps(dataclasses.asdict(ctx.budget)),
                         "--initial", initial, "--target_params", str(int(target_params)),
                         "--seed", str(seed), "--workdir", workdir, "--out", out,
                         "--tflite", tflite_path, "--tflite_float32", float_path)
    subprocess.run(cmd, env=child_env(TF_USE_LEGACY_KERAS="1"), check=True)
    with open(out) as f:
        return json.load(f)


def _kernel_sparsity(model, target_params, keras):
    """Share of Conv2D/Dense kernel weights to zero so that the model's non-zero
    parameters (every weight, BN statistics included) equal target_params."""
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    kernels = sum(int(np.prod(l.kernel.shape)) for l in model.layers
                  if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense)))
    keep = target_params - (total - kernels)
    return float(np.clip(1.0 - keep / kernels, 0.0, 0.99))


def _nonzero_macs(model, profile):
    """MACs if zero weights were skipped: each layer's MACs times its kernel density."""
    total = 0.0
    for layer in model.layers:
        macs = profile["layers"].get(layer.name, {}).get("macs", 0)
        kernel = getattr(layer, "kernel", None)
        if macs and kernel is not None:
            k = np.asarray(kernel)
            total += macs * np.count_nonzero(k) / k.size
        else:
            total += macs
    return int(total)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--budget", required=True, help="suite_budget.Budget as JSON")
    parser.add_argument("--initial", required=True, help=".npz from save_initial")
    parser.add_argument("--target_params", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tflite", required=True)
    parser.add_argument("--tflite_float32", required=True)
    args = parser.parse_args()

    import tensorflow_model_optimization as tfmot

    from benchmarks.common import accuracy, cosine_compile, log
    from benchmarks.suite_budget import Budget, Context
    from benchmarks.suite_deploy import export_float32, export_int8
    from keras_slim.compat import FLAVOUR, LEGACY_KERAS, keras
    from keras_slim.core import metrics
    from keras_slim.slimming.pipeline import default_compile

    if not LEGACY_KERAS:
        sys.exit("suite_tfmot.py needs TF_USE_LEGACY_KERAS=1 (tfmot wraps tf_keras only).")
    budget = json.loads(args.budget)
    budget = Budget(**{k: tuple(v) if isinstance(v, list) else v for k, v in budget.items()})
    ctx = Context(budget, args.workdir)
    sparsity_api = tfmot.sparsity.keras

    keras.utils.set_random_seed(args.seed)
    model = ctx.build(args.model)
    initial = np.load(args.initial)
    for layer in model.layers:
        layer.set_weights([initial[f"{layer.name}:{i}"]
                           for i in range(len(layer.get_weights()))])
    log(f"tfmot ({FLAVOUR} {keras.__version__}, tfmot "
        f"{getattr(tfmot, '__version__', '?')}): {args.model}, {budget.epochs} normal "
        f"+ {budget.finetune_epochs} pruning epochs")
    start = time.time()
    cosine_compile(ctx.steps * budget.epochs)(model)
    model.fit(ctx.train, epochs=budget.epochs, verbose=0)
    dense_accuracy = accuracy(model, ctx.test)
    sparsity = _kernel_sparsity(model, args.target_params, keras)
    ft_steps = ctx.steps * budget.finetune_epochs
    schedule = sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(0.7 * ft_steps)), frequency=max(1, ctx.steps // 10))

    def wrap(layer):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruning = keras.models.clone_model(model, clone_function=wrap)
    cosine_compile(ft_steps)(pruning)
    pruning.fit(ctx.train, epochs=budget.finetune_epochs, verbose=0,
                callbacks=[sparsity_api.UpdatePruningStep()])
    final = default_compile(sparsity_api.strip_pruning(pruning))
    acc = accuracy(final, ctx.test)
    seconds = time.time() - start
    profile = metrics.profile(final)
    nonzero = int(sum(np.count_nonzero(w) for w in final.get_weights()))
    export_int8(final, args.tflite, ctx.x_cal)
    export_float32(final, args.tflite_float32)
    result = {"accuracy": acc, "accuracy_before_pruning": dense_accuracy,
              "params": profile["params"], "nonzero_params": nonzero,
              "macs": profile["macs"], "nonzero_macs": _nonzero_macs(final, profile),
              "kernel_sparsity": sparsity, "seconds": seconds, "tflite": args.tflite,
              "tflite_float32": args.tflite_float32,
              "flavour": f"{FLAVOUR} {keras.__version__}"}
    log(f"tfmot: accuracy {acc:.4f}, kernel sparsity {sparsity:.3f}, non-zero params "
        f"{nonzero:,} of {profile['params']:,}, {seconds:.0f} s")
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
