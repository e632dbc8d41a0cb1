"""Channel criteria: per-channel importance by name, and the plan each one gives.

    "bn_gamma"  |γ| of every BatchNormalization (Network Slimming)
    "l1_norm"   L1 norm of each filter (Li et al., ICLR 2017), from the layer's rule
    "random"    one uniform draw per channel (the ablation baseline)
    "dce"       the CUCB bandits' mean Taylor saliency of a DCE run (needs bandit_state)

A new criterion is a function graph -> {layer path: vector over its output channels},
added to SCORERS.
"""
import numpy as np

from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import plan_from_scores
from keras_slim.core.rebuild import rebuild

CRITERIA = ("bn_gamma", "l1_norm", "random", "dce")


def _l1_norm(graph, seed):
    scores = {}
    for group in graph.groups:
        for path in group.layers:
            op = graph.op_by_path[path]
            scores[path] = op.rule.filter_importance(op)
    return {p: v for p, v in scores.items() if v is not None}


def _random(graph, seed):
    rng = np.random.default_rng(seed)
    scores = {}
    for group in graph.groups:  # one draw per channel, not per member
        values = rng.random(group.size)
        index = {int(r): j for j, r in enumerate(group.roots)}
        for path in group.layers:
            scores[path] = values[[index[int(r)] for r in graph.channel_roots(path)]]
    return scores


def _bn_gamma(graph, seed):
    from keras_slim.slimming.scores import gamma_scores
    return gamma_scores(graph.model)


SCORERS = {"bn_gamma": _bn_gamma, "l1_norm": _l1_norm, "random": _random}
# A channel's members all carry the same draw: "max" keeps it as is.
_DEFAULT_AGGREGATE = {"random": "max"}


def _check_criterion(criterion):
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}. "
                         f"Received: criterion={criterion!r}")


def channel_scores(graph_or_model, criterion, seed=0):
    """{layer path: importance per output channel} by a criterion's name."""
    _check_criterion(criterion)
    if criterion == "dce":
        raise ValueError("criterion 'dce' scores come from a DCE run's bandits: use "
                         "criterion_plan(model, 'dce', ratio, bandit_state=...).")
    graph = graph_or_model if isinstance(graph_or_model, ChannelGraph) \
        else ChannelGraph(graph_or_model)
    return SCORERS[criterion](graph, seed)


def criterion_plan(graph_or_model, criterion, ratio=None, target=None, seed=0,
                   bandit_state=None, latency_table=None, **kwargs):
    """The ChannelPlan removing the `ratio` share of channels a criterion ranks lowest, or
    the one reaching a cost `target` (keras_slim.core.targets: {"macs": 0.5},
    {"params": 1e6}, {"latency_ms": 3.0} with `latency_table`, ...); exactly one of the two.
    Extra keyword arguments go to plan_from_scores (scope, round_to, min_fraction, ...);
    "dce" removes the same share in every gated group (dce_plan). With a target,
    plan.meta["achieved"] holds the plan's MACs, params (and predicted latency)."""
    _check_criterion(criterion)
    if (ratio is None) == (target is None):
        raise ValueError("pass exactly one of ratio (a share of channels) and target (a "
                         f"cost dict). Received: ratio={ratio!r}, target={target!r}")
    graph = graph_or_model if isinstance(graph_or_model, ChannelGraph) \
        else ChannelGraph(graph_or_model)
    if criterion == "dce":
        from keras_slim.dce.pipeline import dce_plan
        if bandit_state is None:
            raise ValueError("criterion 'dce' needs bandit_state: a CUCBCallback, its "
                             "get_state() or the bandit.json of a DCE run.")
        kwargs.pop("scope", None)  # DCE keeps the same share of every gated group

        def make_plan(r):
            return dce_plan(bandit_state, graph.model, 1.0 - r, graph=graph, **kwargs)
        scores = None
    else:
        kwargs.setdefault("aggregate", _DEFAULT_AGGREGATE.get(criterion, "mean"))
        meta = dict(kwargs.pop("meta", None) or {}, criterion=criterion)
        if criterion == "random":
            meta["seed"] = seed
        scores = SCORERS[criterion](graph, seed)

        def make_plan(r):
            return plan_from_scores(graph, scores, r, meta=meta, **kwargs)
    if target is None:
        return make_plan(ratio)
    return _target_plan(graph, make_plan, scores, target, latency_table, kwargs,
                        meta if scores is not None else {})


def _target_plan(graph, make_plan, scores, target, latency_table, kwargs, meta):
    from keras_slim.core import targets
    key, value = targets.check_target(target)
    latency = key in ("latency_ms", "latency")
    if latency and latency_table is None:
        raise ValueError(f"target {target!r} needs latency_table=: a "
                         "keras_slim.latency.LatencyTable or the path of its JSON file.")
    if latency and isinstance(latency_table, str):
        from keras_slim.latency import LatencyTable
        latency_table = LatencyTable.load(latency_table)
    costs = targets.CostModel(graph, latency_table if latency else None)
    cost_key = "latency_ms" if latency else key
    original = costs.cost(cost_key)
    goal = targets.resolve(key, value, costs, original)
    if latency and scores is not None and kwargs.get("scope", "global") == "global":
        greedy_args = {k: kwargs[k] for k in ("aggregate", "min_channels", "min_fraction",
                                              "round_to", "normalizer") if k in kwargs}
        plan = targets.latency_greedy(graph, scores, costs, goal, meta=meta, **greedy_args)
    else:
        steps = max(sum(int(g.prunable.sum()) for g in graph.groups), 2)
        plan = targets.search_ratio(make_plan, costs, cost_key, goal, steps)[0]
    removed = plan.removed_roots(graph)
    achieved = {"macs": costs.macs(removed), "params": costs.params(removed)}
    original_counts = {"macs": costs.macs(), "params": costs.params()}
    if latency:
        achieved["latency_ms"] = costs.latency_ms(removed)
        original_counts["latency_ms"] = original
    plan.meta.update(target={key: value}, target_goal=goal, achieved=achieved,
                     original=original_counts)
    return plan


def removed_gamma_max(model, plan, graph=None):
    """The largest |γ| among the channels a plan removes (0 with no BN γ)."""
    from keras_slim.slimming.scores import gamma_scores
    graph = graph if graph is not None else ChannelGraph(model)
    removed = np.array(sorted(plan.removed_roots(graph)))
    largest = 0.0
    for path, gamma in gamma_scores(model).items():
        hit = np.isin(graph.channel_roots(path), removed)
        if hit.any():
            largest = max(largest, float(gamma[hit].max()))
    return largest


def prune(model, criterion, ratio=None, compensate=True, graph=None, return_report=False,
          target=None, calibration_data=None, verbose=0, measure_latency=False,
          **plan_kwargs):
    """Plan by a criterion (to a `ratio` or a cost `target`, see criterion_plan) and
    rebuild, analysing the model once; returns (pruned, plan) or, with return_report,
    (pruned, plan, RebuildReport).

    With criterion="bn_gamma" and compensate=True, removed channels whose γ sparsity
    training made small (not 0) are taken to emit act(β) and folded into their consumers.
    With calibration_data, their mean output over those batches is folded instead.
    measure_latency=True with target={"latency_ms": x}: the plan whose rebuilt model
    measures closest to x in LiteRT (keras_slim.latency.plan_for_measured_latency).
    """
    graph = graph if graph is not None else ChannelGraph(model)
    if measure_latency:
        if not isinstance(target, dict) or set(target) != {"latency_ms"}:
            raise ValueError("measure_latency needs target={'latency_ms': x}. Received: "
                             f"target={target!r}")
        from keras_slim.latency.landing import plan_for_measured_latency
        table = plan_kwargs.pop("latency_table", None)
        if table is None:
            raise ValueError("measure_latency needs latency_table=.")
        plan = plan_for_measured_latency(model, criterion, target["latency_ms"], table,
                                         graph=graph, **plan_kwargs)
    else:
        plan = criterion_plan(graph, criterion, ratio, target=target, **plan_kwargs)
    tolerance = removed_gamma_max(model, plan, graph) \
        if compensate and criterion == "bn_gamma" and calibration_data is None else 0.0
    pruned, report = rebuild(model, plan, compensate=compensate, gamma_tolerance=tolerance,
                             return_report=True, graph=graph,
                             calibration_data=calibration_data, verbose=verbose)
    return (pruned, plan, report) if return_report else (pruned, plan)
