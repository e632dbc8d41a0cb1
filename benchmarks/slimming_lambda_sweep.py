"""How the suite's slimming λ was chosen: sparsity λ sweep on the full-mode budget.

For each λ: sparsity training (the suite's budget: 20k Fashion-MNIST images, 3 epochs),
the share of |γ| < 0.01, then prune t = 50% and 70% by global |γ|, rebuild (with and
without bias compensation) and fine-tune 2 epochs, exactly as the suite's slimming rows.

    python -m benchmarks.slimming_lambda_sweep     # -> results/slimming_lambda.md (~10 min)
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import suite_runs  # noqa: E402
from benchmarks.common import RESULTS, log, stamp, write_text  # noqa: E402
from benchmarks.suite_budget import FULL, Context  # noqa: E402
from benchmarks.suite_tables import table  # noqa: E402
from keras_slim import slimming  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vgg_small")
    p.add_argument("--lambdas", default="0.005,0.01,0.02")
    p.add_argument("--ratios", default="0.5,0.7")
    p.add_argument("--workdir", default="/tmp/slimming_lambda_sweep")
    p.add_argument("--out", default=os.path.join(RESULTS, "slimming_lambda.md"))
    args = p.parse_args()
    ctx = Context(FULL, args.workdir)
    rows = []
    for l1 in (float(v) for v in args.lambdas.split(",")):
        log(f"{args.model}: sparsity training λ={l1:g}")
        slim, _ = suite_runs.sparsity_model(ctx, args.model, l1, 0)
        sparse = suite_runs.compiled_accuracy(slim, ctx.test)
        share = slimming.sparsity_summary(slim)["overall"]["share"]
        for t in (float(v) for v in args.ratios.split(",")):
            r = suite_runs.prune_and_finetune(ctx, slim, t, FULL.finetune_epochs)
            after = r["after_rebuild"]
            rows.append([f"{l1:g}", f"{100 * sparse:.2f}", f"{100 * share:.1f}%", f"{t:.0%}",
                         f"{100 * after['compensated']:.2f} / {100 * after['uncompensated']:.2f}",
                         f"{100 * r['accuracy']:.2f}", f"{r['model'].count_params():,}"])
            log(" | ".join(rows[-1]))
    text = "\n".join([
        f"# Slimming λ sweep, {args.model} (full-mode suite budget)", "", stamp(), "",
        f"Seed 0; first {FULL.train_examples:,} training images, {FULL.epochs} sparsity "
        f"epochs, prune t by global |γ| (rounded to 8), rebuild, {FULL.finetune_epochs} "
        "fine-tune epochs; test accuracy on the 10,000 test images.", "",
        table(["λ", "sparse model acc %", "|γ| < 0.01", "pruned t",
               "after rebuild % (bias comp. / none)", "after fine-tune %", "params"], rows),
        "", "The suite's slimming rows use the λ in benchmarks/suite_budget.py.", ""])
    write_text(args.out, text)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
