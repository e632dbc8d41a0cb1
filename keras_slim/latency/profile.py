"""Import a device's timings: the per-op profile LiteRT's benchmark_model prints.

On a phone: `benchmark_model --graph=m.tflite --num_threads=4 --enable_op_profiling=true`
prints, after "Operator-wise Profiling Info for Regular Benchmark Runs:", a
"Run Order" table with tab-separated columns

    [node type]  [start]  [first]  [avg ms]  [%]  [cdf%]  [mem KB]  [times called]  [Name]

parse_op_profile reads those rows; import_op_profile maps each node to the Keras layer
whose name is one of the '/'-separated parts of the node name (TFLite names a fused node
"model/conv1/Conv2D;model/conv1/BiasAdd;..."), gives each timed layer a one-point grid at
its widths in that model, and puts the time of unmatched nodes into the overhead.
"""
import os
import re

from keras_slim.core.plan import as_graph
from keras_slim.latency.signature import signature, timed_ops
from keras_slim.latency.table import LatencyTable, LatencyTableError

__all__ = ["parse_op_profile", "import_op_profile"]

_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs"


def _text(text_or_path):
    if "\n" not in text_or_path and os.path.isfile(text_or_path):
        with open(text_or_path) as f:
            return f.read(), f"'{text_or_path}'"
    return text_or_path, "the profile text"


def parse_op_profile(text_or_path):
    """[{"node_type", "avg_ms", "name", "times_called"}] of the Run Order table."""
    text, label = _text(text_or_path)
    start = text.find(_SECTION)
    if start < 0:
        raise LatencyTableError(f"{label} has no '{_SECTION}' section: run benchmark_model "
                                "with --enable_op_profiling=true.")
    rows, columns = [], None
    for line in text[start:].splitlines()[1:]:
        if line.startswith("=") and "Run Order" not in line and columns is not None:
            break  # the next table (Top by Computation Time, summary)
        cells = [c.strip() for c in line.strip().split("\t") if c.strip()]
        if not cells:
            continue
        if cells[0] == "[node type]":
            columns = [c.strip("[]") for c in cells]
            continue
        if columns is None or len(cells) != len(columns):
            continue
        row = dict(zip(columns, cells))
        try:
            rows.append({"node_type": row["node type"], "avg_ms": float(row["avg ms"]),
                         "name": row["Name"].strip("[]"),
                         "times_called": int(float(row.get("times called", 1)))})
        except (KeyError, ValueError):
            raise LatencyTableError(f"{label}: cannot read the profile row {line.strip()!r}."
                                    ) from None
    if not rows:
        raise LatencyTableError(f"{label}: the '{_SECTION}' section has no operator rows.")
    return rows


def import_op_profile(text_or_path, model_or_graph, runtime=None, processor=None):
    """A LatencyTable (source "benchmark_model") from a device's op profile of the
    .tflite of `model_or_graph`. runtime/processor describe the device (defaults say
    "device"; the threads come from the text's "Num threads" line when present)."""
    text, _ = _text(text_or_path)
    rows = parse_op_profile(text)
    graph = as_graph(model_or_graph)
    threads = re.search(r"Num threads: \[(\d+)\]", text)
    runtime = dict(runtime or {"litert": "device", "delegate": "unknown",
                               "threads": int(threads.group(1)) if threads else 1,
                               "dtype": "unknown"})
    processor = dict(processor or {"model": "device", "isa": []})
    by_name = {op.names[-1]: op for op in timed_ops(graph)}
    ms, overhead = {}, 0.0
    for row in rows:
        parts = {p for piece in row["name"].split(";") for p in piece.split("/")}
        hit = next((name for name in by_name if name in parts), None)
        if hit is None:
            overhead += row["avg_ms"]
        else:
            ms[hit] = ms.get(hit, 0.0) + row["avg_ms"]
    table = LatencyTable(runtime, processor, overhead_ms=overhead, source="benchmark_model")
    for name, value in ms.items():
        op = by_name[name]
        sig = signature(op)
        tied = op.rule.width_follows_input
        table.add(sig, {"cin": [sig["cin"]], "cout": None if tied else [sig["cout"]],
                        "ms": [value] if tied else [[value]]})
    return table
