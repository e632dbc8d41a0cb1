"""Measure a latency table on this machine: time small probe models in LiteRT.

For each distinct signature among a model's timed layers (keras_slim.latency.signature),
a probe model holds that one layer at a grid of input/output widths (fractions of the
original, rounded to `round_to`); each is converted (keras_slim.export.convert) and timed
(keras_slim.export.benchmark_tflite). An entry is the probe's median minus the median of
an empty probe (the interpreter's per-invoke cost). The whole model is then timed, and
copies of it at half and a quarter of the width (random plans), and the table's overhead,
scale and output cost fitted to them (see table.py).
"""
import time

import numpy as np

from keras_slim.compat import keras
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import as_graph
from keras_slim.latency.device import processor_info, runtime_info
from keras_slim.latency.signature import signature, signature_key, timed_ops
from keras_slim.latency.table import LatencyTable, covers, output_values

__all__ = ["build_table", "measure_model_ms", "grid_widths", "timing_tflite", "timing_rounds"]


def grid_widths(full, fractions, round_to):
    """Widths at `fractions` of `full`, rounded up to multiples of round_to, deduplicated."""
    widths = {min(full, max(1, int(np.ceil(f * full / round_to)) * round_to))
              for f in fractions}
    return sorted(widths | {full})


def _probe(op, cin, cout):
    # a layer with no width of its own (an activation) keeps its config
    config = dict(op.rule.width_config(op, cout) or op.config, name="probe")
    config.pop("batch_input_shape", None)
    config.pop("batch_shape", None)
    inputs = keras.Input(tuple(op.in_shape(0)[1:-1]) + (cin,))
    return keras.Model(inputs, type(op.layer).from_config(config)(inputs))


def timing_tflite(model, dtype):
    """The model as .tflite bytes (int8 calibrated on random normal inputs: latency does
    not depend on the values)."""
    from keras_slim.export import convert
    data = None
    if dtype == "int8":
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        data = np.random.default_rng(0).standard_normal((4,) + shape).astype(np.float32)
    return convert(model, dtype, representative_data=data)


def _time_ms(content, threads, xnnpack, runs, warmup, statistic):
    from keras_slim.export import benchmark_tflite
    result = benchmark_tflite(content, threads=(threads,), warmup=warmup, runs=runs,
                              xnnpack=xnnpack)
    return result["latency_ms"][threads][statistic]


def _check_timing(statistic, rounds):
    if statistic not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min'. Received: "
                         f"statistic={statistic!r}")
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1. Received: rounds={rounds!r}")


def measure_model_ms(model, dtype="int8", threads=1, xnnpack=True, runs=50, warmup=5,
                     statistic="median", rounds=1, min_seconds=0.0):
    """LiteRT latency (ms; `statistic` "median" or "min" of the runs) of a Keras model
    converted at `dtype`; with rounds > 1 the fastest of that many rounds, each on a fresh
    interpreter, and more rounds until `min_seconds` have passed. "min", rounds and
    min_seconds resist a CPU shared with other jobs, drifting or throttled in spells."""
    _check_timing(statistic, rounds)
    content = timing_tflite(model, dtype)
    measure = dict(threads=threads, xnnpack=xnnpack, runs=runs, statistic=statistic,
                   warmup=warmup, min_seconds=min_seconds)
    return _interleaved_ms([content], measure, int(rounds))[0]


def timing_rounds(rounds, min_seconds=0.0):
    """Round numbers 0, 1, ...: at least `rounds`, and more until `min_seconds` have
    passed (a host that throttles for seconds at a time would otherwise slow every round
    of a short set)."""
    start, done = time.perf_counter(), 0
    while done < rounds or time.perf_counter() - start < min_seconds:
        yield done
        done += 1


def _interleaved_ms(contents, measure, rounds, bar=None):
    """Each file timed once per round, in turn; the fastest round counts (load from other
    jobs then hits every probe alike instead of whole entries); see timing_rounds."""
    best = [float("inf")] * len(contents)
    for done in timing_rounds(rounds, measure.get("min_seconds", 0.0)):
        for i, content in enumerate(contents):
            best[i] = min(best[i], _time_ms(content, measure["threads"], measure["xnnpack"],
                                            measure["runs"], measure.get("warmup", 5),
                                            measure["statistic"]))
            if bar is not None and done < rounds:
                bar.add(1)
    return best


def _terms(table, graph):
    """(Σ entries, Σ output values / 1e6) of a model's timed layers."""
    ops = timed_ops(graph)
    return (sum(table.entry_ms(op) for op in ops),
            sum(output_values(op, op.out_channels(0)) for op in ops) / 1e6)


# Candidate fits: which of (overhead, scale, output_ms) are free, and the scale when it is
# pinned (1: entries as timed, or a bound); a pinned overhead or output cost is 0.
_CANDIDATES = [(free, 1.0) for free in
               [(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (0, 0, 1), (1, 0, 0)]]
_CANDIDATES += [(free, bound) for bound in (0.05, 20.0)
                for free in [(1, 0, 1), (0, 0, 1), (1, 0, 0), (0, 0, 0)]]


def _fit(timed, entries, values):
    """(overhead_ms, scale, output_ms) minimising the squared relative error over the
    timed models, among the fits that are physically plausible: overhead >= 0, output
    cost >= 0, scale in [0.05, 20], and no more free terms than timed models. An exact fit
    through a few noisy timings can put a negative overhead on the model (a pruned model
    then predicts far too fast)."""
    timed, entries, values = (np.asarray(a, float) for a in (timed, entries, values))
    if len(timed) == 1:  # one model: its own latency, the entries as timed
        if timed[0] >= entries[0]:
            return float(timed[0] - entries[0]), 1.0, 0.0
        return 0.0, float(np.clip(timed[0] / entries[0], 0.05, 20.0)), 0.0
    weight = 1.0 / np.maximum(timed, 1e-9)
    columns = np.stack([np.ones_like(timed), entries, values], axis=1)
    best_error, best = np.inf, None
    for free, scale in _CANDIDATES:
        free = np.array(free, bool)
        if free.sum() > len(timed):
            continue
        params = np.array([0.0, scale, 0.0])
        if free.any():
            rest = timed - columns[:, ~free] @ params[~free]
            params[free] = np.linalg.lstsq(columns[:, free] * weight[:, None],
                                           rest * weight, rcond=None)[0]
        overhead, scale, output_ms = params
        if overhead < 0 or output_ms < 0 or not 0.05 <= scale <= 20.0:
            continue
        error = float(np.sum(((columns @ params - timed) * weight) ** 2))
        if error < best_error - 1e-12:  # ties: the earlier, simpler-to-trust candidate
            best_error, best = error, params
    return tuple(float(p) for p in best)


def _fit_scale_and_overhead(table, graph, measure, rounds):
    """Fit overhead, scale and output_ms (see _fit) on the model and random copies at half
    and a quarter of its width; a copy whose terms hardly differ from a model already in
    the fit is left out (its slope would be noise)."""
    from keras_slim.core.plan import random_plan
    from keras_slim.core.rebuild import rebuild
    models, terms = [graph.model], [_terms(table, graph)]
    for removed in (0.5, 0.75):
        try:
            copy = rebuild(graph.model, random_plan(graph, removed, seed=0), graph=graph)
        except ValueError:  # nothing prunable: one point
            break
        copy_terms = _terms(table, ChannelGraph(copy))
        if all(any(abs(a - b) > 0.05 * first for a, b, first
                   in zip(known, copy_terms, terms[0])) for known in terms):
            models.append(copy)
            terms.append(copy_terms)
    timed = np.array(_interleaved_ms([timing_tflite(m, measure["dtype"]) for m in models],
                                     measure, rounds))
    entries, values = np.array(terms).T
    table.overhead_ms, table.scale, table.output_ms = _fit(timed, entries, values)


def build_table(model_or_graph, cache=None, dtype="int8", threads=1, xnnpack=True,
                fractions=(0.25, 0.5, 0.75, 1.0), round_to=8, runs=30, fit_overhead=True,
                statistic="median", rounds=1, min_seconds=0.0, verbose=1):
    """A LatencyTable for a model's timed layers, measured here (see the module
    docstring). With `cache` (a JSON path), entries already measured for the same
    runtime and processor are reused and new ones written back. rounds > 1 times every
    probe once per round, in turn, and keeps its fastest round (a shared CPU); each set
    of files (the probes, the models the fit uses) gets at least `min_seconds` of rounds."""
    _check_timing(statistic, rounds)
    if dtype not in ("int8", "float32"):
        raise ValueError(f"dtype must be 'int8' or 'float32'. Received: dtype={dtype!r}")
    graph = as_graph(model_or_graph)
    runtime, processor = runtime_info(dtype, threads, xnnpack), processor_info()
    table = None
    if cache is not None:
        import os
        if os.path.exists(cache):
            table = LatencyTable.load(cache, runtime, processor)
    table = table or LatencyTable(runtime, processor)
    todo, seen = [], set()
    for op in timed_ops(graph):
        sig = signature(op)
        key = (signature_key(sig), sig["cin"], sig["cout"])
        if key in seen or covers(table.entry(op), sig["cin"], sig["cout"]):
            continue
        seen.add(key)
        tied = op.rule.width_follows_input
        cins = grid_widths(sig["cin"], fractions, round_to)
        couts = None if tied else grid_widths(sig["cout"], fractions, round_to)
        todo.append((op, sig, cins, couts))
    measure = dict(dtype=dtype, threads=threads, xnnpack=xnnpack, runs=runs,
                   statistic=statistic, min_seconds=min_seconds)
    total = sum(len(c) * (len(o) if o else 1) for _, _, c, o in todo)
    if total:
        bar = keras.utils.Progbar(total * (rounds + 1), verbose=verbose, unit_name="probe")
        empty = keras.Input((1, 1, 8))
        contents = [timing_tflite(keras.Model(empty, keras.layers.ReLU()(empty)), dtype)]
        for op, sig, cins, couts in todo:  # convert every probe, then time them
            for cin in cins:
                for cout in (couts or [cin * op.config.get("depth_multiplier", 1)]):
                    contents.append(timing_tflite(_probe(op, cin, cout), dtype))
                    bar.add(1)
        timed = _interleaved_ms(contents, measure, rounds, bar)
        base, timed = timed[0], iter(timed[1:])
        for op, sig, cins, couts in todo:
            ms = []
            for cin in cins:
                row = [max(0.0, next(timed) - base) for _ in (couts or [cin])]
                ms.append(row if couts else row[0])
            table.add(sig, {"cin": cins, "cout": couts, "ms": ms})
    if fit_overhead:  # per model (its element-wise ops, pooling...): refit even on a cache hit
        _fit_scale_and_overhead(table, graph, measure, rounds)
    if cache is not None:
        table.save(cache)
    return table
