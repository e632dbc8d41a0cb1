"""Network Slimming on real Fashion-MNIST: baseline vs sparsity-train → prune → fine-tune.

Prints and writes (--out, markdown) the γ distribution after sparsity training, params
and FLOPs before/after, accuracy right after rebuild with and without bias compensation,
and accuracy after fine-tuning against the unpruned baseline trained the same way
(the paper's protocol: baseline E epochs; slimming E sparsity epochs + F fine-tune).

    python benchmarks/slimming_fashion_mnist.py                 # ~20 min on 2 cores
    python benchmarks/slimming_fashion_mnist.py --quick         # a few minutes, labelled
"""
import argparse
import datetime
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_slim import data, models  # noqa: E402
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.network_slimming import network_slimming  # noqa: E402


def cosine_compile(steps):
    def compile_fn(model, learning_rate=0.05):
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return compile_fn


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--epochs", type=int, default=3, help="baseline = sparsity epochs")
    parser.add_argument("--finetune_epochs", type=int, default=3)
    parser.add_argument("--l1", type=float, default=5e-3,
                        help="stronger than the paper's 1e-4: 5 epochs, not 160")
    parser.add_argument("--ratio", type=float, default=0.7)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--quick", action="store_true",
                        help="1+1 epochs on 10k training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/slimming.md")
    args = parser.parse_args()
    train_split = "train[:10000]" if args.quick else "train"
    if args.quick:
        args.epochs = args.finetune_epochs = 1
    train, info = data.load("fashion_mnist", train_split, batch_size=args.batch_size,
                            seed=args.seed)
    test, _ = data.load("fashion_mnist", "test", batch_size=512)
    steps = int(train.cardinality()) * args.epochs
    compile_fn = cosine_compile(steps)
    verbose = 2

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    baseline = models.build(args.model, input_shape=info.input_shape,
                            num_classes=info.num_classes)
    initial = [w.copy() for w in baseline.get_weights()]
    compile_fn(baseline)
    baseline.fit(train, epochs=args.epochs, verbose=verbose)
    base_acc = baseline.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    base_time = time.time() - start

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    model = models.build(args.model, input_shape=info.input_shape,
                         num_classes=info.num_classes)
    model.set_weights(initial)  # same initialisation as the baseline
    result = network_slimming(model, train, args.epochs, args.finetune_epochs, args.ratio,
                              l1=args.l1, compile_fn=compile_fn, validation_data=test,
                              verbose=verbose)
    slim_time = time.time() - start
    final_acc = result.model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    report, sparsity = result.report, result.sparsity[0]["overall"]
    after = result.after_rebuild[0]
    gap = 100 * (final_acc - base_acc)
    lines = [
        f"## Network Slimming on Fashion-MNIST ({'QUICK run' if args.quick else 'full run'})",
        "",
        f"- date {datetime.date.today()}, {platform.machine()} CPU x{os.cpu_count()}, "
        f"TF {tf.__version__}, {FLAVOUR} {keras.__version__}",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- model {args.model}, train split {train_split}, batch {args.batch_size}, SGD "
        f"momentum 0.9, lr 0.05 cosine; baseline {args.epochs} epochs; slimming λ={args.l1} "
        f"for {args.epochs} epochs, prune {args.ratio:.0%} of channels (global |γ|, rounded "
        f"to 8), fine-tune {args.finetune_epochs} epochs",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| γ after sparsity training: share |γ| < {result.sparsity[0]['threshold']} | "
        f"{sparsity['share']:.1%} of {sparsity['channels']} |",
        f"| γ histogram (counts) | {list(map(int, sparsity['counts']))} |",
        f"| γ histogram (edges) | {[round(float(e), 3) for e in sparsity['edges']]} |",
        f"| params before → after | {report['params_before']:,} → {report['params_after']:,}"
        f" ({report['params_ratio']:.1f}× smaller; goal ≥ 8×: "
        f"{'met' if report['params_ratio'] >= 8 else 'NOT met'}) |",
        f"| FLOPs (MACs) before → after | {report['macs_before']:,} → "
        f"{report['macs_after']:,} ({report['macs_ratio']:.1f}× smaller; goal ≥ 2×: "
        f"{'met' if report['macs_ratio'] >= 2 else 'NOT met'}) |",
        f"| baseline accuracy | {base_acc:.2%} |",
        f"| after rebuild, before fine-tune, with bias compensation | "
        f"{after['compensated']:.2%} |",
        f"| after rebuild, before fine-tune, without compensation | "
        f"{after['uncompensated']:.2%} |",
        f"| after fine-tune | {final_acc:.2%} ({gap:+.2f} pt vs baseline; goal ≥ −0.3 pt: "
        f"{'met' if gap >= -0.3 else 'NOT met'}) |",
        f"| wall time baseline / slimming | {base_time:.0f} s / {slim_time:.0f} s |",
        "",
        "Kept channels per group:",
        "",
        "```",
        result.plans[0].table(),
        "```",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
