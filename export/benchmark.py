"""Size and latency of a .tflite in the LiteRT interpreter (XNNPACK, its CPU default).

Per-operator timing is not offered: ai_edge_litert 2.3.0's Python Interpreter exposes no
profiler (only the experimental_force_delegate_node_profiling flag, whose results have no
Python accessor). Use the C++ benchmark_model tool with --enable_op_profiling for that.
"""
import time

import numpy as np

from keras_slim.export.errors import ExportError
from keras_slim.export.verify import load_interpreter


def _check_count(value, argument, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExportError(f"{argument} must be an integer >= {minimum}, got {value!r}.")


def _random_input(detail, rng):
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)


def fill_random_inputs(interpreter, seed=0):
    """Set every input of an allocated interpreter to random values of its dtype."""
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(detail, rng))


def benchmark_tflite(tflite, threads=(1, 4), warmup=10, runs=100, seed=0, xnnpack=True):
    """{"size_bytes", "size_kb", "latency_ms": {threads: {"median", "p90", "min", "mean"}},
    "xnnpack"} for batch-1 inference on random inputs of the file's input dtype.

    xnnpack=False times LiteRT's builtin kernels instead of its default XNNPACK delegate.
    On some CPUs XNNPACK's int8 convolutions cost about the same for any small channel
    count while the builtin kernels' cost follows the channels
    (benchmarks/results/litert_conv_scaling.md).
    """
    if isinstance(threads, int):
        threads = (threads,)
    for t in threads:
        _check_count(t, "threads", 1)
    _check_count(warmup, "warmup", 0)
    _check_count(runs, "runs", 1)
    result = {"latency_ms": {}, "xnnpack": bool(xnnpack)}
    for t in threads:
        interpreter, content, label = load_interpreter(tflite, num_threads=t,
                                                       xnnpack=xnnpack)
        fill_random_inputs(interpreter, seed)
        for _ in range(warmup):
            interpreter.invoke()
        times = np.empty(runs)
        for i in range(runs):
            start = time.perf_counter()
            interpreter.invoke()
            times[i] = time.perf_counter() - start
        times *= 1000.0
        result["latency_ms"][t] = {"median": float(np.median(times)),
                                   "p90": float(np.percentile(times, 90)),
                                   "min": float(times.min()), "mean": float(times.mean())}
        result["size_bytes"] = len(content)
        result["file"] = label
    result["size_kb"] = result["size_bytes"] / 1024
    result["per_op"] = None  # see the module docstring
    return result
