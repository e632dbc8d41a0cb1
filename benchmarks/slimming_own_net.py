"""Network Slimming with the default settings on a net written outside the project
(issue 15): a small phone-style residual net with squeeze-and-excitation and depthwise
(inverted-residual) blocks, trained on Fashion-MNIST until its test accuracy settles,
then `ks.slim(model, train, ratio=0.6, pretrained=True, validation_data=test)` with
nothing else set.

Goals: the sparsity-trained model within 2 pt of the starting accuracy, the pruned and
fine-tuned model within 1 pt of it.

    python -m benchmarks.slimming_own_net --out benchmarks/results/slimming_own_net.md
"""
import argparse
import ast
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_slim as ks  # noqa: E402
from benchmarks.common import (  # noqa: E402
    cosine_compile, fashion_mnist, publish, run_header)
from keras_slim.compat import keras  # noqa: E402
from keras_slim.pipeline import defaults  # noqa: E402

layers = keras.layers


def _conv_bn(x, filters, kernel=1, strides=1, act=True):
    x = layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU(6.0)(x) if act else x


def _squeeze_excite(x, reduction=4):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(channels // reduction, 1, activation="relu")(s)
    s = layers.Conv2D(channels, 1, activation="hard_sigmoid")(s)
    return layers.Multiply()([x, s])


def _inverted_residual(x, filters, strides=1, expand=4):
    h = _conv_bn(x, x.shape[-1] * expand)
    h = layers.DepthwiseConv2D(3, strides, padding="same", use_bias=False)(h)
    h = layers.ReLU(6.0)(layers.BatchNormalization()(h))
    h = _squeeze_excite(h)
    h = _conv_bn(h, filters, act=False)
    return layers.Add()([x, h]) if strides == 1 and x.shape[-1] == filters else h


def _basic_residual(x):
    h = _conv_bn(x, x.shape[-1], 3)
    h = _conv_bn(h, x.shape[-1], 3, act=False)
    return layers.ReLU()(layers.Add()([x, h]))


def own_net(input_shape, num_classes):
    """Stem, inverted residuals with SE at 28/14/7 px, a basic residual block, 1×1 head."""
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, 24, 3)
    x = _inverted_residual(x, 24)
    x = _inverted_residual(x, 40, strides=2)
    x = _inverted_residual(x, 40)
    x = _inverted_residual(x, 80, strides=2)
    x = _inverted_residual(x, 80)
    x = _basic_residual(x)
    x = _conv_bn(x, 256)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="own_se_depthwise_net")


def _baseline(args, train, test, info):
    """(trained model, test accuracy % per epoch, training seconds), cached at
    args.baseline so several slimming settings can start from the same model."""
    sidecar = args.baseline and os.path.splitext(args.baseline)[0] + ".json"
    if args.baseline and os.path.exists(args.baseline):
        with open(sidecar) as f:
            meta = json.load(f)
        if meta["epochs"] != args.epochs or meta["train_images"] != args.train_images:
            raise ValueError(f"--baseline {args.baseline} was trained with {meta}; "
                             f"this run asks for epochs={args.epochs}, "
                             f"train_images={args.train_images}")
        return keras.models.load_model(args.baseline), meta["curve"], meta["seconds"]
    model = own_net(info.input_shape, info.num_classes)
    start = time.time()
    cosine_compile(int(train.cardinality()) * args.epochs)(model)
    history = model.fit(train, epochs=args.epochs, validation_data=test, verbose=2)
    seconds = time.time() - start
    curve = [100 * a for a in history.history["val_accuracy"]]
    if args.baseline:
        model.save(args.baseline)
        with open(sidecar, "w") as f:
            json.dump({"epochs": args.epochs, "train_images": args.train_images,
                       "curve": curve, "seconds": seconds}, f)
    return model, curve, seconds


def _overrides(variant):
    """'fade=False,finetune_epochs=2' -> {"fade": False, "finetune_epochs": 2}."""
    pairs = (item.split("=", 1) for item in variant.split(","))
    return {key.strip(): ast.literal_eval(value.strip()) for key, value in pairs}


def _after_prune(result):
    """How far the prune moved the accuracy from the sparsity-trained model's."""
    report = result.report
    if "accuracy_sparse" not in report:
        return "no sparsity phase"
    gap = 100 * (report["accuracy_pruned"] - report["accuracy_sparse"])
    return f"{gap:+.2f} pt (goal: ≥ −1)"


def _faded(result):
    sparsity = dict(result.histories).get("sparsity", {})
    faded = sparsity.get("faded_channels")
    return f"; {int(faded[-1]):,} BN channels faded to γ = β = 0" if faded else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="baseline training epochs")
    parser.add_argument("--ratio", type=float, default=0.6)
    parser.add_argument("--train_images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--baseline", default=None,
                        help="a .keras path: load the trained baseline from it if it exists "
                             "(with its .json curve), else train and save it there")
    parser.add_argument("--variants", default="",
                        help="more ks.slim settings to run on the same baseline, ';'-separated, "
                             "each 'key=value,...' (e.g. 'fade=False;finetune_epochs=2')")
    parser.add_argument("--out", default="benchmarks/results/slimming_own_net.md")
    args = parser.parse_args()
    split, train, test, info = fashion_mnist(False, args.batch_size, args.seed,
                                             train_images=args.train_images)
    keras.utils.set_random_seed(args.seed)
    model, curve, baseline_seconds = _baseline(args, train, test, info)
    bn_channels = sum(layer.get_weights()[0].size for layer in model.layers
                      if isinstance(layer, layers.BatchNormalization))
    settle = max(curve[-3:]) - min(curve[-3:])

    runs = {"defaults": {}}  # name -> ks.slim overrides
    runs.update((variant, _overrides(variant)) for variant in args.variants.split(";")
                if variant.strip())
    results, minutes = {}, {}
    for name, overrides in runs.items():
        start = time.time()
        results[name] = ks.slim(model, train, method="slimming", ratio=args.ratio,
                                validation_data=test, pretrained=True, **overrides)
        minutes[name] = (time.time() - start) / 60
    first = results["defaults"].report
    before = 100 * first["accuracy_before"]

    def row(stage, key, goal=None):
        cells = []
        for result in results.values():
            accuracy = 100 * result.report[key]
            delta = accuracy - before
            verdict = "" if goal is None else (" met" if delta >= -goal else " **NOT met**")
            cells.append(f"{accuracy:.2f} ({delta:+.2f}{verdict})")
        return f"| {stage} | {' | '.join(cells)} | {'' if goal is None else f'≥ −{goal:g}'} |"

    names = list(results)
    lines = [
        "## Network Slimming, default settings, on a net written outside the project", "",
        *run_header(),
        f"- model: `benchmarks/slimming_own_net.own_net` — inverted residuals with SE and "
        f"depthwise convs, a basic residual block; {model.count_params():,} params, "
        f"{bn_channels:,} BN channels",
        f"- Fashion-MNIST {split}, full test set, batch {args.batch_size}, seed {args.seed}; "
        f"baseline: SGD momentum 0.9, lr 0.05 cosine, {args.epochs} epochs "
        f"({baseline_seconds / 60:.1f} min); test accuracy per epoch: "
        f"{', '.join(f'{a:.2f}' for a in curve)} — moves {settle:.2f} pt over the last 3 "
        f"epochs ({'settled: < 0.2 pt' if settle < 0.2 else 'NOT settled: ≥ 0.2 pt'})",
        f"- then `ks.slim(model, train, method=\"slimming\", ratio={args.ratio}, "
        f"validation_data=test, pretrained=True)`, nothing else set "
        f"({minutes['defaults']:.1f} min): the pretrained defaults "
        f"{defaults(pretrained=True)}: the fade, then fine-tuning with distillation, its "
        f"learning rate cosine-decayed to 0; right after the prune vs after sparsity "
        f"training: "
        f"{_after_prune(results['defaults'])}"
        + _faded(results["defaults"]),
        *[f"- `{name}`: the defaults with this changed ({minutes[name]:.1f} min)"
          + _faded(results[name]) for name in names[1:]],
        "",
        f"| stage | test acc % (Δ vs start pt): {' | '.join(names)} | goal pt |",
        "|---|" + "---|" * (len(names) + 1),
        f"| start (trained baseline) | {' | '.join(f'{before:.2f}' for _ in names)} | |",
        row("after sparsity training", "accuracy_sparse", 2),
        row(f"right after pruning {args.ratio:.0%} of channels", "accuracy_pruned"),
        row("after fine-tuning (distillation)", "accuracy_after", 1),
        "",
        *[f"- {name}: params {r.report['params_before']:,} → {r.report['params_after']:,}, "
          f"MACs {r.report['macs_before']:,} → {r.report['macs_after']:,} "
          f"({r.report['macs_before'] / r.report['macs_after']:.2f}× fewer)"
          for name, r in results.items()],
        "",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
