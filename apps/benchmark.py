"""Size and LiteRT latency of a model; for a .keras model also params and MACs.

    python -m keras_slim.apps.benchmark --model_path=run/after.keras --mode=int8 --threads=1,4
    python -m keras_slim.apps.benchmark --model_path=run/after_int8.tflite --output_dir=run/bench

    python -m keras_slim.apps.benchmark --model_path=m.keras --latency_table=lat.json

A .keras model is converted first (--mode; int8 calibrated on training images) into
--output_dir. Prints a table and writes benchmark.json there. With --latency_table (a
.keras model, --mode int8 or float32) it also prints each layer's latency from that
table — measured by probe models and added to the file when this runtime's table lacks
them — and the model's predicted vs measured latency at the first --threads.
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
    flags.DEFINE_string("latency_table", None, "A latency table JSON to read and extend "
                        "(keras_slim.latency): prints per-layer and predicted latency.")
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


def format_layers(table, graph):
    rows = table.per_layer(graph)
    width = max([len(p) for p, *_ in rows] + [5])
    lines = [f"{'layer':<{width}} {'cin':>6} {'cout':>6} {'ms':>9}"]
    lines += [f"{p:<{width}} {cin:>6} {cout:>6} {ms:>9.4f}" for p, cin, cout, ms in rows]
    lines.append(f"{'overhead':<{width}} {'':>6} {'':>6} {table.overhead_ms:>9.4f}")
    return "\n".join(lines)


def latency_report(model, measured_ms):
    """Per-layer table and predicted vs measured latency (--latency_table)."""
    from keras_slim.core.graph import ChannelGraph
    from keras_slim.latency import LatencyTableError, build_table
    if FLAGS.mode not in ("int8", "float32"):
        raise app.UsageError(f"--latency_table needs --mode int8 or float32, got {FLAGS.mode}.")
    graph = ChannelGraph(model)
    try:
        table = build_table(graph, cache=FLAGS.latency_table, dtype=FLAGS.mode,
                            threads=int(FLAGS.threads[0]), xnnpack=FLAGS.xnnpack)
    except LatencyTableError as e:
        raise app.UsageError(f"--latency_table: {e}") from None
    predicted = table.predict_model(graph)
    print("\n" + format_layers(table, graph))
    print(f"\npredicted {predicted:.3f} ms, measured {measured_ms:.3f} ms "
          f"({100 * (predicted / measured_ms - 1):+.1f}%), {FLAGS.threads[0]} thread(s); "
          f"table {FLAGS.latency_table}")
    return {"predicted_ms": predicted, "measured_ms": measured_ms}


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
    if FLAGS.latency_table and FLAGS.model_path.endswith(".keras"):
        result["latency_prediction"] = latency_report(
            model, bench["latency_ms"][threads[0]]["median"])
        resume.write_json(path, result)
    elif FLAGS.latency_table:
        raise app.UsageError("--latency_table needs a .keras --model_path (its layers).")
    kernels = "XNNPACK" if FLAGS.xnnpack else "builtin kernels, no XNNPACK"
    print(f"\nlatency: median of {FLAGS.runs} batch-1 invocations in LiteRT ({kernels}); "
          f"wrote {path}")


launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()
