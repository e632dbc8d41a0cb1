"""Prune to a cost target: how many channels each group keeps to reach it.

    target={"macs": 0.5}            half the original's MACs (a fraction <= 1)
    target={"macs": 150_000_000}    an absolute count (> 1)
    target={"params": 0.25}         the same for parameters
    target={"latency_ms": 3.0}      predicted LiteRT latency from a latency table
    target={"latency": 0.5}         a fraction of the original's predicted latency

MACs and params of a candidate plan are counted without rebuilding: each layer's kept
input/output channels come from the graph's channel ids, its MACs from its rule
(`rule.macs(op, cin, cout)`) and its params from the weight axes the rule names.

MACs/params targets (and any target with the "dce" criterion) search the criterion's
own ratio: the smallest share of channels whose plan meets the target, so the plan is
within one step of the search (one more channel of the ranking) of it. Latency targets
with a scored criterion go greedily (NetAdapt / HALP): each step removes, from the
group where it costs least importance per millisecond saved, the channels down to the
next width at which the table says latency drops.
"""
import math

import numpy as np

from keras_slim.core.plan import (ChannelPlan, GroupPlan, _round_per_layer, _kept_count,
                                  as_graph, group_scores)
from keras_slim.core.rules import IN, MID, OUT

__all__ = ["TARGET_KEYS", "CostModel", "check_target", "search_ratio", "latency_greedy"]

TARGET_KEYS = ("macs", "params", "latency_ms", "latency")


def check_target(target):
    """(key, value) of a target dict, or one clear ValueError."""
    if not isinstance(target, dict) or len(target) != 1:
        raise ValueError(f"target must be a dict with one of the keys {list(TARGET_KEYS)}, "
                         f"e.g. {{'macs': 0.5}}. Received: target={target!r}")
    (key, value), = target.items()
    if key not in TARGET_KEYS:
        raise ValueError(f"target key must be one of {list(TARGET_KEYS)}. "
                         f"Received: target={target!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"target value must be a positive number. Received: target={target!r}")
    if key == "latency" and value > 1:
        raise ValueError("target 'latency' is a fraction of the original's predicted latency "
                         f"in (0, 1]; use 'latency_ms' for milliseconds. Received: "
                         f"target={target!r}")
    return key, float(value)


class CostModel:
    """Kept input/output channels, MACs, params and predicted latency of every layer at a
    candidate set of removed channels (union-find roots), without rebuilding."""

    def __init__(self, graph, latency_table=None):
        self.graph = graph
        self.table = latency_table
        self.ops = [op for op in graph.ops if not op.is_input and len(op.inputs) == 1]
        self._in = {op.path: np.asarray(graph.roots(op.in_ids(0))) for op in self.ops}
        self._out = {op.path: np.asarray(graph.roots(op.out_ids(0))) for op in self.ops}
        self.size = 1 + max(int(max(r.max(initial=0) for r in self._in.values())),
                            int(max(r.max(initial=0) for r in self._out.values())))

    def _dead(self, removed):
        dead = np.zeros(self.size, bool)
        if len(removed):
            dead[np.fromiter(removed, dtype=np.int64)] = True
        return dead

    def widths(self, removed=()):
        """{layer path: (kept input channels, kept output channels)}."""
        dead = self._dead(removed)
        return {p: (int((~dead[self._in[p]]).sum()), int((~dead[self._out[p]]).sum()))
                for p in self._in}

    def macs(self, removed=()):
        return sum(int(op.rule.macs(op, *w))
                   for op, w in self._pairs(removed))

    def params(self, removed=()):
        return sum(_params(op, *w) for op, w in self._pairs(removed))

    def latency_ms(self, removed=()):
        """Predicted latency: the table's entries at the kept widths + its overhead."""
        if self.table is None:
            raise ValueError("a latency target needs a latency table (latency_table=...).")
        return self.table.overhead_ms + sum(
            self.table.predict(op, *w) or 0.0
            for op, w in self._pairs(removed))

    def cost(self, key, removed=()):
        return {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms,
                "latency": self.latency_ms}[key](removed)

    def _pairs(self, removed):
        widths = self.widths(removed)
        return [(op, widths[op.path]) for op in self.ops]


def _params(op, cin, cout):
    """Weights of a layer at cin/cout channels: each axis the rule ties to the input
    ("in"), output ("out") or depthwise middle ("mid") shrinks in proportion."""
    weights = getattr(op.layer, "weights", None)  # a Keras 3 operation node has none
    if not weights:
        return 0
    axes = op.rule.weight_axes(op)
    full_in, full_out = op.in_channels(0), op.out_channels(0)
    total = 0
    for w, spec in zip(weights, axes or [{}] * len(weights)):
        shape = list(w.shape)
        for axis, side in spec.items():
            full = {IN: full_in, OUT: full_out, MID: shape[axis]}[side]
            kept = {IN: cin, OUT: cout, MID: shape[axis] * cin // max(full_in, 1)}[side]
            shape[axis] = shape[axis] * kept // max(full, 1) if side != MID else kept
        total += int(np.prod(shape))
    return total


def resolve(key, value, costs, original):
    """The target in absolute units: fractions (<= 1) of the original for macs/params,
    the original's predicted latency times `value` for "latency"."""
    if key == "latency":
        return value * original
    if key in ("macs", "params") and value <= 1:
        return value * original
    return value


def search_ratio(make_plan, costs, key, goal, steps):
    """The plan of the smallest ratio k/steps (k integer) whose cost is <= goal, by
    bisection (removal grows with the ratio). Raises if even the largest misses."""
    def cost(k):
        plan = make_plan(k / steps)
        return plan, costs.cost(key, plan.removed_roots(costs.graph))

    best = cost(steps - 1)
    if best[1] > goal:
        raise ValueError(f"target {key}={goal:g} cannot be reached: the smallest plan the "
                         f"floors allow has {key}={best[1]:g} (original "
                         f"{costs.cost(key):g}).")
    lo, hi = -1, steps - 1  # cost(lo) > goal (or lo = -1), cost(hi) <= goal
    found = best
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = cost(mid)
        if trial[1] <= goal:
            hi, found = mid, trial
        else:
            lo = mid
    return found[0], found[1], hi


def latency_greedy(graph, scores, costs, goal, aggregate="mean", min_channels=1,
                   min_fraction=0.0, round_to=8, meta=None, min_drop_ms=1e-6, normalizer=None):
    """Greedy latency-target plan (see the module docstring). Importance per group is the
    criterion's score aggregated over a channel's members, as plan_from_scores does."""
    graph = as_graph(graph)
    per_group = group_scores(graph, scores, aggregate, normalizer)
    scored = [g for g in graph.groups if g.name in per_group and g.prunable.any()]
    if not scored:
        raise ValueError(f"no importance covers a whole group of model {graph.model.name!r}.")
    order, floor, count = {}, {}, {}
    for g in scored:
        # most important first; fixed channels rank above all
        order[g.name] = np.argsort(-np.where(g.prunable, per_group[g.name], np.inf),
                                   kind="stable")
        fixed = g.size - int(g.prunable.sum())
        # rounded like plan_from_scores: a 1-channel int8 conv fails XNNPACK's prepare
        floor[g.name] = max(fixed, _kept_count(g.size, 0, min_channels, min_fraction, round_to))
        count[g.name] = g.size
    groups = {g.name: g for g in scored}
    tabled = [op for op in costs.ops if costs.table.entry(op) is not None]

    # For each tabled op side and group: the ranks of the group's channels it sees.
    root_pos = {}
    for g in scored:
        for j, r in enumerate(g.roots):
            root_pos[int(r)] = (g.name, j)
    rank = {name: np.argsort(order[name]) for name in order}
    sides = {}
    for op in tabled:
        for side, roots in (("in", costs._in[op.path]), ("out", costs._out[op.path])):
            fixed, per = 0, {}
            for r in roots:
                hit = root_pos.get(int(r))
                if hit is None:
                    fixed += 1
                else:
                    per.setdefault(hit[0], []).append(rank[hit[0]][hit[1]])
            sides[op.path, side] = (fixed, {n: np.sort(v) for n, v in per.items()})
    touching = {name: [op for op in tabled
                       if name in sides[op.path, "in"][1] or name in sides[op.path, "out"][1]]
                for name in groups}

    def kept(op, side, counts):
        fixed, per = sides[op.path, side]
        return fixed + sum(int(np.searchsorted(v, counts[n])) for n, v in per.items())

    def op_ms(op, counts):
        return costs.table.predict(op, kept(op, "in", counts), kept(op, "out", counts))

    def total(counts):
        return costs.table.overhead_ms + sum(op_ms(op, counts) for op in tabled)

    def step(current):
        """Lower the group whose next width step costs least importance per ms saved."""
        best = None
        for name, g in groups.items():
            now = sum(op_ms(op, count) for op in touching[name])
            width = count[name]
            trial = dict(count)
            while True:  # next multiple of round_to down, until latency drops
                width = max(floor[name], (width - 1) // round_to * round_to)
                if width >= count[name]:
                    break
                trial[name] = width
                saved = now - sum(op_ms(op, trial) for op in touching[name])
                if saved > min_drop_ms:
                    lost = float(per_group[name][order[name][width:count[name]]].sum())
                    value = lost / saved
                    if best is None or value < best[0]:
                        best = (value, name, width, saved)
                    break
                if width == floor[name]:
                    break
        if best is None:
            raise ValueError(f"target latency_ms={goal:g} cannot be reached: at the floors "
                             f"the table predicts {current:g} ms (original {start:g} ms).")
        count[best[1]] = best[2]
        return current - best[3]

    def rounded_groups():
        return [GroupPlan(g.name, g.layers, g.size, _round_per_layer(
            graph, g, set(int(i) for i in order[g.name][:count[g.name]]), order[g.name],
            min_channels, min_fraction, round_to)) for g in scored]

    current = start = total(count)
    asked = goal
    while True:
        while current > asked:
            current = step(current)
        plans = rounded_groups()
        # rounding a zero-pad/concat group's layers adds channels: price the final plan
        rounded = ChannelPlan(graph.model.name, plans, {})
        final = costs.latency_ms(rounded.removed_roots(graph))
        if final <= goal + 1e-9:
            break
        asked = current - (final - goal)
    plan = ChannelPlan(graph.model.name, plans, dict(
        meta or {}, aggregate=aggregate, round_to=round_to,
        **({"normalizer": normalizer} if normalizer else {})))
    plan.meta["removed_share"] = round(1 - plan.kept_channels / max(plan.total_channels, 1), 4)
    return plan
