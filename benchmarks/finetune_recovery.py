"""How much a pruned net recovers under different fine-tune settings (issue 15): fade the
channels to remove once (network_slimming's pretrained fade, no fine-tuning), then
fine-tune copies of that same pruned model, distilled from the model as it came, at each
(learning rate, epochs, α) given. Isolates the fine-tune from the fade's randomness.

    python -m benchmarks.slimming_own_net --epochs 10 --baseline own10.keras  # once
    python -m benchmarks.finetune_recovery --model own10.keras \\
        --settings 0.005,1,0.5 0.02,1,0.5 0.02,2,0.5
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import (  # noqa: E402
    accuracy, fashion_mnist, log, machine, publish, run_header)
from keras_slim.compat import keras  # noqa: E402
from keras_slim.slimming.pipeline import default_compile, finetune, network_slimming  # noqa: E402
from keras_slim.training import distillation  # noqa: E402


def _setting(text):
    """'0.02,2,0.5' -> (learning rate, epochs, α)."""
    try:
        rate, epochs, alpha = text.split(",")
        return float(rate), int(epochs), float(alpha)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a setting is 'learning_rate,epochs,alpha' (e.g. 0.02,2,0.5); got {text!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the trained .keras model")
    parser.add_argument("--ratio", type=float, default=0.6, help="share of channels removed")
    parser.add_argument("--fade_learning_rate", type=float, default=0.005)
    parser.add_argument("--settings", nargs="+", type=_setting, required=True,
                        help="fine-tune settings 'learning_rate,epochs,alpha'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--train_images", type=int, default=None,
                        help="train on the first N training images (default: all 60k)")
    parser.add_argument("--out", default="benchmarks/results/finetune_recovery.md")
    args = parser.parse_args()
    split, train, test, _ = fashion_mnist(False, args.batch_size, args.seed,
                                        train_images=args.train_images)
    keras.utils.set_random_seed(args.seed)
    model = keras.models.load_model(args.model)
    start = accuracy(default_compile(model), test)
    log(f"fade {args.ratio:.0%} of channels, 1 epoch at lr {args.fade_learning_rate:g}")
    faded = network_slimming(model, train, 1, 0, args.ratio, 0.0, fade=True,
                             compile_fn=lambda m: default_compile(m, args.fade_learning_rate),
                             validation_data=test, verbose=2)
    sparse = faded.histories[0][1]["val_accuracy"][-1]
    pruned = faded.after_rebuild[0]["compensated"]
    weights = faded.model.get_weights()
    rows = []
    for rate, epochs, alpha in args.settings:
        keras.utils.set_random_seed(args.seed)
        small = keras.models.clone_model(faded.model)
        small.set_weights(weights)
        began = time.time()
        small, history = finetune(small, train, epochs,
                                  lambda m, rate=rate: default_compile(m, rate),
                                  test, verbose=2, alpha=alpha,
                                  teacher=distillation.frozen_copy(model))
        curve = [100 * a for a in history["val_accuracy"]]
        rows.append(f"| {rate:g} | {epochs} | {alpha:g} | "
                    f"{', '.join(f'{a:.2f}' for a in curve)} | {curve[-1] - 100 * start:+.2f} | "
                    f"{(time.time() - began) / 60:.1f} |")
        log(rows[-1])
    publish([
        "## Fine-tune recovery of one pruned model", "", *run_header(),
        f"- machine: {machine()}",
        f"- Fashion-MNIST {split}, full test set, batch {args.batch_size}, seed "
        f"{args.seed}; `{args.model}` at {100 * start:.2f}%; {args.ratio:.0%} of channels "
        f"faded to γ = β = 0 in 1 epoch at lr {args.fade_learning_rate:g} "
        f"({100 * sparse:.2f}% after it, {100 * pruned:.2f}% right after the prune); each "
        "row fine-tunes a copy of that pruned model, distilled (T = "
        f"{distillation.DEFAULT_TEMPERATURE:g}) from the model as it came, SGD momentum "
        "0.9, the rate cosine-decayed to 0", "",
        "| lr | epochs | α | test acc % per epoch | Δ vs start pt | min |",
        "|---|---|---|---|---|---|", *rows, ""], args.out)


if __name__ == "__main__":
    main()
