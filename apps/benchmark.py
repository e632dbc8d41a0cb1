"""Size and LiteRT latency of a model; for a .keras model also params and MACs.

    python -m keras_slim.apps.benchmark --model_path=run/after.keras --mode=int8 --threads=1,4
    python -m keras_slim.apps.benchmark --model_path=run/after_int8.tflite --output_dir=run/bench

A .keras model is converted first (--mode; int8 calibrated on training images) into
--output_dir. Prints a table and writes benchmark.json there.
"""
import os

from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_model_path_flag("A .keras model (converted first) or a .tflite file.")
    common.define_output_flag("benchmark")
    flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8", "int16x8"],
                      "Conversion mode of a .keras model (int8: full integer).")
    flags.DEFINE_enum("dataset", "fashion_mnist", common.data.SUPPORTED,
                      "Dataset of the int8/int16x8 calibration images.")
    flags.DEFINE_string("local_data_dir", None, "Directory with the dataset's idx files.")
    flags.DEFINE_integer("representative_samples", 200, "Training images for int8 calibration.",
                         lower_bound=1)
    flags.DEFINE_list("threads", ["1"], "LiteRT interpreter thread counts to time, e.g. 1,4.")
    flags.DEFINE_integer("warmup", 10, "Untimed invocations first.", lower_bound=0)
    flags.DEFINE_integer("runs", 50, "Timed invocations (batch 1) per thread count.",
                         lower_bound=1)
    flags.DEFINE_bool("xnnpack", True,
                      "Run with LiteRT's default XNNPACK delegate; --noxnnpack times the builtin "
                      "kernels (see benchmarks/results/litert_conv_scaling.md for when that "
                      "differs).")
    flags.register_validator("model_path",
                             lambda p: p is None or p.endswith((".keras", ".tflite")),
                             message="--model_path must name a .keras or a .tflite file.")
    flags.register_validator("threads",
                             lambda ts: bool(ts) and all(t.isdigit() and int(t) >= 1 for t in ts),
                             message="--threads must be a comma-separated list of integers >= 1.")
    common.allow_redefinition()


def format_table(result):
    threads = sorted(result["latency_ms"])
    head = (f"{'model':<28} {'params':>9} {'MACs':>12} {'KB':>8} "
            + " ".join(f"{f'ms ({t} thr)':>11}" for t in threads))
    name = os.path.basename(result["tflite"])
    params = f"{result['params']:,}" if result.get("params") is not None else "–"
    macs = f"{result['macs']:,}" if result.get("macs") is not None else "–"
    row = (f"{name:<28} {params:>9} {macs:>12} {result['size_kb']:>8.1f} "
           + " ".join(f"{result['latency_ms'][t]['median']:>11.3f}" for t in threads))
    return "\n".join([head, "-" * len(head), row])


def main(argv):
    del argv
    common.quiet_logs()
    from keras_slim import export
    from keras_slim.training import resume
    from keras_slim.zoo import data
    from keras_slim.core import metrics

    out = common.output_dir("benchmark")
    result = {"model_path": FLAGS.model_path, "params": None, "macs": None}
    if FLAGS.model_path.endswith(".keras"):
        model = common.load_keras_model(FLAGS.model_path)
        profile = metrics.profile(model)
        result.update(params=profile["params"], macs=profile["macs"], mode=FLAGS.mode)
        calibration = None
        if FLAGS.mode in ("int8", "int16x8"):
            calibration = data.representative_dataset(
                FLAGS.dataset, FLAGS.representative_samples, local_dir=FLAGS.local_data_dir)
        stem = os.path.splitext(os.path.basename(FLAGS.model_path))[0]
        tflite = os.path.join(out, f"{stem}_{FLAGS.mode}.tflite")
        export.convert(model, FLAGS.mode, representative_data=calibration,
                       output_path=tflite,
                       metadata=export.build_metadata(dataset=FLAGS.dataset))
    else:
        tflite = FLAGS.model_path
    threads = tuple(int(t) for t in FLAGS.threads)
    try:
        bench = export.benchmark_tflite(tflite, threads=threads, warmup=FLAGS.warmup,
                                        runs=FLAGS.runs, xnnpack=FLAGS.xnnpack)
    except export.ExportError as e:  # not a .tflite file LiteRT can read
        raise app.UsageError(f"--model_path={FLAGS.model_path}: {e}") from None
    result.update(tflite=tflite, size_bytes=bench["size_bytes"], size_kb=bench["size_kb"],
                  latency_ms=bench["latency_ms"], warmup=FLAGS.warmup, runs=FLAGS.runs,
                  xnnpack=bench["xnnpack"])
    table = format_table(result)
    path = os.path.join(out, "benchmark.json")
    resume.write_json(path, result)
    print(table)
    kernels = "XNNPACK" if FLAGS.xnnpack else "builtin kernels, no XNNPACK"
    print(f"\nlatency: median of {FLAGS.runs} batch-1 invocations in LiteRT ({kernels}); "
          f"wrote {path}")


launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()
