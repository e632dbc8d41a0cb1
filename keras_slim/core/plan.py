"""ChannelPlan: which channels of each dependency group survive.

Builders turn any per-channel importance into a plan: a global percentile over all
prunable channels (Network Slimming) or the same ratio in every group, always with a
per-group floor (never zero channels) and kept counts rounded to a multiple (default 8:
LiteRT's kernels gain nothing from odd widths).
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from keras_slim.core.graph import ChannelGraph, GraphError

AGGREGATES = {"sum": np.sum, "mean": np.mean, "max": np.max}
NORMALIZERS = (None, "mean")


@dataclass
class GroupPlan:
    name: str
    layers: list
    size: int
    keep: list   # sorted channel indices of the group that survive

    @property
    def removed(self):
        return self.size - len(self.keep)


class ChannelPlan:
    """Kept channel indices per group, tied to one model's graph by group names/sizes."""

    def __init__(self, model_name, groups, meta=None):
        self.model_name = model_name
        self.groups = list(groups)
        self.meta = dict(meta or {})
        for g in self.groups:
            if not g.keep:
                raise ValueError(f"plan keeps no channel of group {g.name!r}.")
            if len(set(g.keep)) != len(g.keep) or min(g.keep) < 0 or max(g.keep) >= g.size:
                raise ValueError(f"plan for group {g.name!r}: indices must be unique and in "
                                 f"[0, {g.size}), got {g.keep}.")

    # --- serialisation ------------------------------------------------------------------
    def to_dict(self):
        return {"format": "keras_slim.ChannelPlan/1", "model": self.model_name,
                "meta": self.meta,
                "groups": [{"name": g.name, "layers": g.layers, "size": g.size,
                            "keep": [int(i) for i in g.keep]} for g in self.groups]}

    @classmethod
    def from_dict(cls, data):
        if data.get("format") != "keras_slim.ChannelPlan/1":
            raise ValueError("not a keras_slim channel plan (missing 'format': "
                             "'keras_slim.ChannelPlan/1').")
        return cls(data["model"], [GroupPlan(g["name"], list(g["layers"]), int(g["size"]),
                                             sorted(int(i) for i in g["keep"]))
                                   for g in data["groups"]], data.get("meta"))

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"channel plan file '{path}' does not exist.")
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except json.JSONDecodeError as e:
            raise ValueError(f"channel plan file '{path}' is not valid JSON: {e}") from None

    # --- use ----------------------------------------------------------------------------
    def removed_roots(self, graph):
        """Union-find roots of the channels to remove, after checking the plan fits."""
        by_name = {g.name: g for g in self.groups}
        removed = set()
        for group in graph.groups:
            plan = by_name.pop(group.name, None)
            if plan is None:
                continue
            if plan.size != group.size or plan.layers != group.layers:
                raise GraphError(
                    f"the plan does not fit model {graph.model.name!r}: group {group.name!r} "
                    f"has {group.size} channels in layers {group.layers}, the plan says "
                    f"{plan.size} in {plan.layers}. Was it made for another model?")
            dropped = np.setdiff1d(np.arange(group.size), plan.keep)
            if (~group.prunable[dropped]).any():
                raise GraphError(f"the plan removes channels of group {group.name!r} that "
                                 "reach a model input/output or a barrier layer.")
            removed.update(int(r) for r in group.roots[dropped])
        if by_name:
            raise GraphError(f"the plan names groups {sorted(by_name)} that model "
                             f"{graph.model.name!r} does not have. Was it made for another "
                             "model?")
        return removed

    @property
    def total_channels(self):
        return sum(g.size for g in self.groups)

    @property
    def kept_channels(self):
        return sum(len(g.keep) for g in self.groups)

    def table(self):
        width = max([len(g.name) for g in self.groups] + [5])
        lines = [f"{'group':<{width}}  kept / total  removed  layers"]
        for g in self.groups:
            lines.append(f"{g.name:<{width}}  {len(g.keep):>4} / {g.size:<5}  "
                         f"{g.removed:>7}  {', '.join(g.layers)}")
        total, kept = self.total_channels, self.kept_channels
        lines.append(f"{'total':<{width}}  {kept:>4} / {total:<5}  {total - kept:>7}  "
                     f"({100.0 * (total - kept) / max(total, 1):.1f}% removed)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"ChannelPlan({self.model_name!r}, {len(self.groups)} groups, "
                f"{self.kept_channels}/{self.total_channels} channels kept)")


# --- builders ---------------------------------------------------------------------------
def _check_ratio(ratio):
    if not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}.")


def group_scores(graph, scores, aggregate="mean", normalizer=None):
    """Per-group channel importance from per-layer scores {layer path: vector over the
    layer's output channels}; a channel's score aggregates all its members' scores.
    normalizer="mean" divides each group's scores by their mean over its prunable channels,
    so a global ranking compares channels with their own layer's (as Torch-Pruning's
    default normalizer does): the |γ| of a net trained without an L1 term differ in scale
    from layer to layer."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(AGGREGATES)}, got {aggregate!r}.")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {list(NORMALIZERS)}, got {normalizer!r}.")
    per_root = {}
    for path, values in scores.items():
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        roots = graph.channel_roots(path)
        if len(values) != len(roots):
            raise ValueError(f"importance for layer {path!r} has {len(values)} values, the "
                             f"layer has {len(roots)} output channels.")
        if not np.isfinite(values).all():
            raise ValueError(f"importance for layer {path!r} contains NaN or inf.")
        for root, value in zip(roots, values):
            per_root.setdefault(int(root), []).append(value)
    result = {}
    for group in graph.groups:
        if all(int(r) in per_root for r in group.roots):
            result[group.name] = np.array([AGGREGATES[aggregate](per_root[int(r)])
                                           for r in group.roots])
            if normalizer == "mean" and group.prunable.any():
                scale = float(np.mean(result[group.name][group.prunable]))
                if scale > 0:  # all-zero (or signed) scores have no scale to divide by
                    result[group.name] = result[group.name] / scale
    return result


def _kept_count(size, wanted, min_channels, min_fraction, round_to):
    """Kept channels of a group: at least the floor, rounded *up* to a multiple of
    round_to (never removes more than asked), never more than the group has."""
    floor = max(1, min_channels, math.ceil(min_fraction * size))
    count = max(wanted, floor)
    if count >= size:
        return size
    return int(min(size, math.ceil(count / round_to) * round_to))


def _lowest(values, k):
    """Indices of the k lowest values; ties broken by position (stable)."""
    return np.argsort(values, kind="stable")[:k]


def plan_from_scores(graph_or_model, scores, ratio, scope="global", aggregate="mean",
                     min_channels=1, min_fraction=0.0, round_to=8, meta=None,
                     normalizer=None):
    """Remove the `ratio` least important prunable channels.

    scope="global": the round(ratio * n) lowest-scored of all n scored channels, ranked
    together (Network Slimming's global threshold; ties broken by position);
    scope="layer": the same share inside each group. Groups with no score stay whole.
    A coupled channel's score aggregates its members' (default: mean, so a channel shared
    by many residual layers is not favoured by a sum); normalizer: see group_scores. Then
    the floor and rounding apply.
    """
    _check_ratio(ratio)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}.")
    if normalizer and scope == "layer":
        raise ValueError(f"normalizer={normalizer!r} changes nothing with scope='layer' "
                         "(each layer is ranked on its own): use it with scope='global'.")
    if round_to < 1 or min_channels < 0 or not 0.0 <= min_fraction <= 1.0:
        raise ValueError("round_to must be >= 1, min_channels >= 0, min_fraction in [0, 1].")
    graph = as_graph(graph_or_model)
    per_group = group_scores(graph, scores, aggregate, normalizer)
    if not per_group:
        raise ValueError(f"no importance covers a whole group of model "
                         f"{graph.model.name!r}; scores were given for {sorted(scores)}.")
    scored = [g for g in graph.groups if g.name in per_group and g.prunable.any()]
    removed = {g.name: 0 for g in scored}
    if scope == "global":
        owners = [(g.name, j) for g in scored for j in np.flatnonzero(g.prunable)]
        pool = np.array([per_group[name][j] for name, j in owners])
        for i in _lowest(pool, int(round(ratio * len(pool)))):
            removed[owners[i][0]] += 1
    else:
        for g in scored:
            removed[g.name] = int(math.floor(ratio * int(g.prunable.sum())))
    plans = []
    for group in scored:
        values = per_group[group.name]
        fixed = group.size - int(group.prunable.sum())
        count = _kept_count(group.size, group.size - removed[group.name], min_channels,
                            min_fraction, round_to)
        # Fixed channels are always kept; the rest by score.
        order = np.argsort(-np.where(group.prunable, values, np.inf), kind="stable")
        keep = _round_per_layer(graph, group, set(int(i) for i in order[:max(count, fixed)]),
                                order, min_channels, min_fraction, round_to)
        plans.append(GroupPlan(group.name, group.layers, group.size, keep))
    plan = ChannelPlan(graph.model.name, plans, dict(
        meta or {}, ratio=ratio, scope=scope, aggregate=aggregate, round_to=round_to,
        **({"normalizer": normalizer} if normalizer else {})))
    plan.meta["removed_share"] = round(1 - plan.kept_channels / max(plan.total_channels, 1), 4)
    return plan


def _round_per_layer(graph, group, keep, order, min_channels=1, min_fraction=0.0,
                     round_to=1):
    """A group joined through Concatenate or a zero-pad shortcut spans several layers'
    channels, and its count says nothing of each layer's: one could keep no channel, or
    an odd width the kernels run slowly (a CIFAR ResNet's first stage at 1 channel). Then
    every layer keeps at least the floor, rounded up to round_to: smallest layer first,
    each adds its best unkept channels, preferring those no smaller layer owns (nested
    zero-pad stages share their first channels), until no layer needs more."""
    position = {int(r): j for j, r in enumerate(group.roots)}
    rank = {int(j): n for n, j in enumerate(order)}
    keep = set(keep)
    spans = sorted({tuple(sorted({position[int(r)] for r in graph.channel_roots(path)}))
                    for path in group.layers}, key=len)
    if all(len(span) == group.size for span in spans):
        return sorted(keep)  # one span: the group's count was rounded already
    for _ in range(len(spans)):
        changed, smaller = False, set()
        for span in spans:
            have = sum(j in keep for j in span)
            want = _kept_count(len(span), have, min_channels, min_fraction, round_to)
            if want > have:
                free = sorted((j for j in span if j not in keep),
                              key=lambda j: (j in smaller, rank[j]))
                keep.update(free[:want - have])
                changed = True
            smaller.update(span)
        if not changed:
            break
    return sorted(keep)


def as_graph(graph_or_model):
    if isinstance(graph_or_model, ChannelGraph):
        return graph_or_model
    return ChannelGraph(graph_or_model)


def l1_norm_plan(graph_or_model, ratio, **kwargs):
    """Filters with the smallest L1 norm go first (Li et al., ICLR 2017)."""
    from keras_slim.core.criteria import criterion_plan
    return criterion_plan(graph_or_model, "l1_norm", ratio, **kwargs)


def random_plan(graph_or_model, ratio, seed=0, **kwargs):
    """Random channels: the ablation baseline."""
    from keras_slim.core.criteria import criterion_plan
    return criterion_plan(graph_or_model, "random", ratio, seed=seed, **kwargs)
