"""LatencyTable: per-layer latency as a function of input/output channels, and its file.

File format (JSON, "keras_slim.LatencyTable/1"); one file may hold several tables, one
per runtime + processor (the cache key, keras_slim.latency.device.table_key):

    {"format": "keras_slim.LatencyTable/1",
     "tables": {"<key>": {
        "runtime":   {"litert": "2.3.0", "delegate": "xnnpack" | "builtin",
                      "threads": 1, "dtype": "int8" | "float32"},
        "processor": {"model": "<CPU model name>", "isa": ["avx2", ...]},
        "source":    "probes" | "benchmark_model",
        "overhead_ms": 0.05,      # whole model minus the sum of entries (fitted), or 0
        "scale": 1.0,             # entries' factor in a whole model (fitted), default 1
        "output_ms": 0.0,         # ms per million output values of each entry's layer
                                  # (fitted), default 0
        "entries": {"<signature key>": {
            "signature": {"class": "Conv2D", "config": {...}, "input": [H, W],
                          "cin": 32, "cout": 64},
            "grids": [{"cin": [8, 16, 32], "cout": [16, 32, 64],
                       "ms": [[...], [...], [...]]}]}}}}}

A grid's "ms" is a matrix over cin × cout; for a layer whose output width follows its
input (depthwise, an activation) "cout" is null and "ms" a list over cin. Between grid
points latency is interpolated linearly; below the smallest and above the largest, it
scales in proportion to the width. A table imported from a device's benchmark_model
profile has one point per layer (its widths in that model), so it scales in proportion
to the channels.

Layers timed alone do not always add up to a whole model: on a CPU where the kernels are
fast (an AMX Xeon at 32², int8) per-op costs inside the model dominate, and the untimed
element-wise ops that follow a layer (residual adds, SE products) cost in proportion to
its output, not its MACs. (Activations TFLite cannot fuse, such as MobileNetV3's
hard-swish, are timed layers of their own: Rule.runs_alone.) keras_slim's
probes therefore fit on whole-model measurements (the unpruned model and random copies
at half and a quarter of the width; least squares on relative error, with overhead_ms
and output_ms >= 0):
model ms = overhead_ms + Σ (scale × entry + output_ms × output values / 1e6).
"""
import json
import os

import numpy as np

from keras_slim.latency.device import processor_info, runtime_info, table_key
from keras_slim.latency.signature import signature, signature_key, timed_ops

__all__ = ["FORMAT", "LatencyTable", "LatencyTableError"]

FORMAT = "keras_slim.LatencyTable/1"


class LatencyTableError(ValueError):
    """A latency table file that cannot be used (missing, not JSON, wrong format)."""


def _interp(x, xs, ys):
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) == 1 or x <= xs[0]:
        return float(ys[0] * x / xs[0])
    if x >= xs[-1]:
        return float(ys[-1] * x / xs[-1])
    return float(np.interp(x, xs, ys))


def _grid_ms(grid, cin, cout):
    if grid["cout"] is None:
        return _interp(cin, grid["cin"], grid["ms"])
    rows = [_interp(cout, grid["cout"], row) for row in grid["ms"]]
    return _interp(cin, grid["cin"], rows)


def output_values(op, cout):
    """Values a layer call writes per example at `cout` output channels, as the output
    cost counts them: none for an activation timed as a layer of its own (its entry
    holds its element-wise work)."""
    if op.rule.runs_alone(op):
        return 0
    return int(np.prod([int(d) for d in op.out_shape(0)[1:-1]])) * int(cout)


def _covering(grids, cin, cout):
    """The smallest grid whose widths reach cin/cout (else the largest)."""
    def reach(g):
        return max(g["cin"]) * (max(g["cout"]) if g["cout"] is not None else 1)
    fits = [g for g in grids if max(g["cin"]) >= cin
            and (g["cout"] is None or max(g["cout"]) >= cout)]
    return min(fits, key=reach) if fits else max(grids, key=reach)


def covers(entry, cin, cout):
    """True if one of an entry's grids was measured at exactly these widths."""
    return entry is not None and any(
        cin in g["cin"] and (g["cout"] is None or cout in g["cout"]) for g in entry["grids"])


class LatencyTable:
    """Latency entries of one runtime on one processor."""

    def __init__(self, runtime=None, processor=None, entries=None, overhead_ms=0.0,
                 source="probes", scale=1.0, output_ms=0.0):
        self.runtime = dict(runtime or runtime_info())
        self.processor = dict(processor or processor_info())
        self.entries = dict(entries or {})
        self.overhead_ms = float(overhead_ms)
        self.scale = float(scale)
        self.output_ms = float(output_ms)
        self.source = source

    @property
    def key(self):
        return table_key(self.runtime, self.processor)

    # --- prediction ---------------------------------------------------------------------
    def entry(self, op):
        """The entry of a layer call (by its signature), or None if the table has none."""
        return self.entries.get(signature_key(signature(op)))

    def add(self, sig, grid):
        entry = self.entries.setdefault(signature_key(sig), {"signature": sig, "grids": []})
        entry["grids"].append(grid)

    def entry_ms(self, op, cin=None, cout=None):
        """The entry's ms of one layer call at cin/cout channels (its own by default), as
        timed alone; None if the table has no entry for it."""
        entry = self.entry(op)
        if entry is None:
            return None
        cin = op.in_channels(0) if cin is None else cin
        cout = op.out_channels(0) if cout is None else cout
        return max(0.0, _grid_ms(_covering(entry["grids"], cin, cout), cin, cout))

    def predict(self, op, cin=None, cout=None):
        """Predicted ms of one layer call inside a model at cin/cout channels (its own by
        default); None if the table has no entry for it."""
        layer_ms = self.entry_ms(op, cin, cout)
        if layer_ms is None:
            return None
        cout = op.out_channels(0) if cout is None else cout
        return self.scale * layer_ms + self.output_ms * output_values(op, cout) / 1e6

    def per_layer(self, graph):
        """[(layer path, cin, cout, predicted ms or None)] of the timed layers."""
        return [(op.path, op.in_channels(0), op.out_channels(0), self.predict(op))
                for op in timed_ops(graph)]

    def predict_model(self, graph):
        """Sum of the entries of the model's timed layers + the overhead (ms). Raises if a
        timed layer has no entry (build or import the table for this model first)."""
        rows = self.per_layer(graph)
        missing = [path for path, _, _, ms in rows if ms is None]
        if missing:
            raise LatencyTableError(f"the latency table has no entry for layers {missing} "
                                    f"of model {graph.model.name!r}: build it for this model.")
        return self.overhead_ms + sum(ms for *_, ms in rows)

    # --- file ---------------------------------------------------------------------------
    def to_dict(self):
        return {"runtime": self.runtime, "processor": self.processor, "source": self.source,
                "overhead_ms": self.overhead_ms, "scale": self.scale,
                "output_ms": self.output_ms, "entries": self.entries}

    def save(self, path):
        """Write (or merge into) a table file: other runtimes' tables in it are kept."""
        data = {"format": FORMAT, "tables": {}}
        if os.path.exists(path):
            data = _read(path)
        data["tables"][self.key] = self.to_dict()
        with open(path, "w") as f:
            json.dump(data, f, indent=1)

    @classmethod
    def load(cls, path, runtime=None, processor=None):
        """The table of `runtime` on `processor` in a file; with neither given, the file's
        only table. Raises LatencyTableError naming the file otherwise."""
        data = _read(path)
        tables = data["tables"]
        if runtime is None and processor is None:
            if len(tables) != 1:
                raise LatencyTableError(f"latency table file '{path}' holds {len(tables)} "
                                        "tables: pass runtime= and processor= to choose one.")
            key = next(iter(tables))
        else:
            key = table_key(runtime or runtime_info(), processor or processor_info())
        if key not in tables:
            return None
        try:
            t = tables[key]
            return cls(t["runtime"], t["processor"], t["entries"], t.get("overhead_ms", 0.0),
                       t.get("source", "probes"), t.get("scale", 1.0),
                       t.get("output_ms", 0.0))
        except (KeyError, TypeError) as e:
            raise LatencyTableError(f"latency table file '{path}' is damaged: a table lacks "
                                    f"{e}.") from None


def _read(path):
    if not os.path.isfile(path):
        raise LatencyTableError(f"latency table file '{path}' does not exist.")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LatencyTableError(f"latency table file '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("tables"), dict):
        raise LatencyTableError(f"latency table file '{path}' is not a keras_slim latency "
                                f"table (missing 'format': '{FORMAT}' and 'tables').")
    return data
