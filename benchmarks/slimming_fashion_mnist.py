"""Network Slimming on real Fashion-MNIST: baseline vs sparsity-train → prune → fine-tune.

Prints and writes (--out, markdown) the γ distribution after sparsity training, params
and FLOPs before/after, accuracy right after rebuild with and without bias compensation,
and accuracy after fine-tuning against the unpruned baseline trained the same way
(the paper's protocol: baseline E epochs; slimming E sparsity epochs + F fine-tune).

    python -m benchmarks.slimming_fashion_mnist                 # ~20 min on 2 cores
    python -m benchmarks.slimming_fashion_mnist --quick         # a few minutes, labelled
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import (  # noqa: E402
    accuracy, build_model, cosine_compile, fashion_mnist, publish, run_header)
from keras_slim.compat import keras  # noqa: E402
from keras_slim.slimming.pipeline import network_slimming  # noqa: E402


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
    if args.quick:
        args.epochs = args.finetune_epochs = 1
    train_split, train, test, info = fashion_mnist(args.quick, args.batch_size, args.seed)
    steps = int(train.cardinality()) * args.epochs
    compile_fn = cosine_compile(steps)
    verbose = 2

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    baseline = build_model(args.model, info)
    initial = [w.copy() for w in baseline.get_weights()]
    compile_fn(baseline)
    baseline.fit(train, epochs=args.epochs, verbose=verbose)
    base_acc = accuracy(baseline, test)
    base_time = time.time() - start

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    model = build_model(args.model, info)
    model.set_weights(initial)  # same initialisation as the baseline
    result = network_slimming(model, train, args.epochs, args.finetune_epochs, args.ratio,
                              l1=args.l1, compile_fn=compile_fn, validation_data=test,
                              verbose=verbose)
    slim_time = time.time() - start
    final_acc = accuracy(result.model, test)
    report, sparsity = result.report, result.sparsity[0]["overall"]
    after = result.after_rebuild[0]
    gap = 100 * (final_acc - base_acc)
    lines = [
        f"## Network Slimming on Fashion-MNIST ({'QUICK run' if args.quick else 'full run'})",
        "",
        *run_header(),
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
    publish(lines, args.out)


if __name__ == "__main__":
    main()
