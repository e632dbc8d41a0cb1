"""Export to phones: size, LiteRT latency and accuracy of vgg_small on Fashion-MNIST,
unpruned and L1-norm pruned (50% / 70% of channels removed), in every export mode.

    python -m benchmarks.export_bench [--epochs 2] [--out benchmarks/results/export.md]
    python -m benchmarks.export_bench --quick          # small subset, a few minutes

Latency is batch-1 LiteRT (XNNPACK) on this machine's CPU, median of --runs; run it on
a quiet machine. "gain/FLOPs" = (unpruned latency / latency) / (unpruned MACs / MACs) in
the same mode and thread count: 1.0 means latency fell exactly as much as FLOPs did.
"""
import argparse
import datetime
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import command, litert_versions, write_text  # noqa: E402
from keras_slim import export  # noqa: E402
from keras_slim.compat import keras  # noqa: E402
from keras_slim.core.metrics import profile  # noqa: E402
from keras_slim.core.plan import l1_norm_plan  # noqa: E402
from keras_slim.core.rebuild import rebuild  # noqa: E402
from keras_slim.zoo import data as ks_data  # noqa: E402
from keras_slim.zoo.models import build  # noqa: E402

DATASET = "fashion_mnist"


def _parse():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="subset of the data, fewer runs: proves the pipeline, not the numbers")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of the unpruned model")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7],
                   help="fractions of channels removed (l1_norm_plan ratio)")
    p.add_argument("--modes", nargs="+", default=list(export.MODES), choices=export.MODES)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--train-take", type=int, default=None, help="first N training examples")
    p.add_argument("--test-take", type=int, default=None, help="first N test examples")
    p.add_argument("--calibration", type=int, default=200, help="representative samples")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", default="benchmarks/results/export.md")
    p.add_argument("--keep-files", default=None, help="directory to keep the .tflite files in")
    args = p.parse_args()
    if args.quick:
        args.train_take = args.train_take or 2048
        args.test_take = args.test_take or 500
        args.runs = min(args.runs, 20)
        args.warmup = min(args.warmup, 3)
        args.calibration = min(args.calibration, 50)
    return args


def _fit(model, args, epochs, lr):
    train, _ = ks_data.load(DATASET, "train", batch_size=args.batch_size, take=args.train_take,
                            augment=False, seed=0)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy"
                  if _softmax_head(model) else
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train, epochs=epochs, verbose=2, shuffle=False)  # load() already shuffles
    return model


def _softmax_head(model):
    return getattr(getattr(model.layers[-1], "activation", None), "__name__", "") == "softmax"


def _variants(args):
    info = ks_data.info(DATASET)
    keras.utils.set_random_seed(0)
    base = build("vgg_small", input_shape=info.input_shape, num_classes=info.num_classes)
    print(f"training vgg_small for {args.epochs} epoch(s)", flush=True)
    _fit(base, args, args.epochs, 1e-3)
    yield "unpruned", base, None
    for ratio in args.ratios:
        plan = l1_norm_plan(base, ratio)
        pruned = rebuild(base, plan)
        print(f"fine-tuning the {ratio:.0%}-pruned model for {args.finetune_epochs} epoch(s)",
              flush=True)
        _fit(pruned, args, args.finetune_epochs, 3e-4)
        yield f"pruned {ratio:.0%}", pruned, plan


def _rows(args, workdir):
    x_test, y_test = ks_data.numpy_arrays(DATASET, "test", take=args.test_take)
    x_cal, _ = ks_data.numpy_arrays(DATASET, "train", take=args.calibration)
    rows, reference = [], {}
    for name, model, plan in _variants(args):
        macs = profile(model)["macs"]
        meta = export.build_metadata(dataset=DATASET, plan=plan, model=name)
        for mode in args.modes:
            print(f"  {name}: {mode}", flush=True)
            path = os.path.join(workdir, f"{name.replace(' ', '_').replace('%', '')}_{mode}.tflite")
            export.convert(model, mode, output_path=path, metadata=meta,
                           representative_data=x_cal if mode in ("int8", "int16x8") else None)
            report = export.verify(path, keras_model=model, x=x_test, y=y_test)
            bench = export.benchmark_tflite(path, threads=tuple(args.threads),
                                            warmup=args.warmup, runs=args.runs)
            latency = {t: bench["latency_ms"][t]["median"] for t in args.threads}
            if name == "unpruned":
                reference[mode] = (latency, macs)
            ref_latency, ref_macs = reference[mode]
            gains = {t: (ref_latency[t] / latency[t]) / (ref_macs / macs) for t in args.threads}
            rows.append({"model": name, "mode": mode, "size_kb": bench["size_kb"],
                         "latency": latency, "p90": {t: bench["latency_ms"][t]["p90"]
                                                     for t in args.threads},
                         "accuracy": report["accuracy"],
                         "keras_accuracy": report["keras_accuracy"],
                         "agreement": report["agreement"], "macs": macs, "gain": gains})
    return rows


def _table(rows, threads):
    lat = " | ".join(f"ms {t}T (p90)" for t in threads)
    gain = " | ".join(f"gain/FLOPs {t}T" for t in threads)
    lines = [f"| model | mode | size KB | {lat} | acc TFLite | acc Keras | top-1 agree | "
             f"MMACs | {gain} |",
             "|" + "---|" * (7 + 2 * len(threads))]
    for r in rows:
        lats = " | ".join(f"{r['latency'][t]:.3f} ({r['p90'][t]:.3f})" for t in threads)
        gains = " | ".join(f"{r['gain'][t]:.2f}" for t in threads)
        lines.append(f"| {r['model']} | {r['mode']} | {r['size_kb']:.1f} | {lats} | "
                     f"{r['accuracy']:.4f} | {r['keras_accuracy']:.4f} | {r['agreement']:.4f} | "
                     f"{r['macs'] / 1e6:.2f} | {gains} |")
    return "\n".join(lines)


def main():
    args = _parse()
    export.errors.check_output_path(args.out, "--out")  # fail before training, not after
    if args.keep_files:
        os.makedirs(args.keep_files, exist_ok=True)
        rows = _rows(args, args.keep_files)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            rows = _rows(args, workdir)
    table = _table(rows, args.threads)
    print(table)
    report = "\n".join([
        "# Export benchmark: vgg_small on Fashion-MNIST", "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- versions: {litert_versions()}",
        f"- command: `{command()}`"
        + (" (quick: subset, not for conclusions)" if args.quick else ""),
        f"- data: train take={args.train_take or 'all'}, test take={args.test_take or 'all'}, "
        f"calibration {args.calibration} samples; latency: batch 1, median of {args.runs} "
        f"runs after {args.warmup} warm-up, LiteRT interpreter (XNNPACK)",
        "- gain/FLOPs = (unpruned latency / latency) / (unpruned MACs / MACs), same mode "
        "and threads; per-operator profiles are not available from ai-edge-litert's "
        "Python API", "", table, ""])
    write_text(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
