"""Deployment figures of a trained model: int8 .tflite size, int8 accuracy and LiteRT
latency (1 thread, batch 1), with the files of one model benchmarked side by side."""
import gzip
import os
import statistics

import numpy as np

from keras_slim import export


def export_int8(model, path, x_cal):
    """Full-integer .tflite (int8 weights, activations and I/O) calibrated on x_cal."""
    export.convert(model, "int8", representative_data=x_cal, output_path=path)
    return path


def export_float32(model, path):
    """Plain float32 .tflite: the latency reference for runtimes that scale with FLOPs."""
    export.convert(model, "float32", output_path=path)
    return path


def int8_accuracy(path, x, y):
    logits = export.predict(path, x, batch_size=256)
    return float(np.mean(logits.reshape(len(x), -1).argmax(axis=1) == np.ravel(y)))


def sizes(path):
    """(size KB, gzip -9 size KB): tfmot's sparse weights only shrink once compressed."""
    with open(path, "rb") as f:
        content = f.read()
    return len(content) / 1024, len(gzip.compress(content, 9)) / 1024


def latencies(files, runs, rounds, warmup=20):
    """{key: {"median_ms", "p90_ms", "round_medians"}} for {key: (.tflite path, xnnpack)}.

    Interleaved: every round benchmarks each file once (export.benchmark_tflite, one
    thread), so machine noise hits all files alike; the figure is the median of the
    rounds' medians, p90 the median of their p90s.
    """
    medians = {key: [] for key in files}
    p90s = {key: [] for key in files}
    for r in range(rounds):
        for key, (path, xnnpack) in files.items():
            bench = export.benchmark_tflite(path, threads=1, warmup=warmup, runs=runs, seed=r,
                                            xnnpack=xnnpack)
            medians[key].append(bench["latency_ms"][1]["median"])
            p90s[key].append(bench["latency_ms"][1]["p90"])
    return {key: {"median_ms": statistics.median(medians[key]),
                  "p90_ms": statistics.median(p90s[key]),
                  "round_medians": medians[key]} for key in files}


def tflite_name(workdir, model_name, row, mode="int8"):
    safe = "".join(c if c.isalnum() else "_" for c in row).strip("_")
    return os.path.join(workdir, f"{model_name}_{safe}_{mode}.tflite")
