"""Prune to a target in N steps, with the user's fine-tuning between them.

Each step reaches a share of the way to the target on a geometric schedule (step i of N
aims at fraction^(i/N) of the original's cost), re-scoring the channels of the model the
previous step and its fine-tuning left.
"""
from keras_slim.core.criteria import prune
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.targets import CostModel, check_target

__all__ = ["prune_iteratively"]


def prune_iteratively(model, criterion, target, iterative_steps=2, fine_tune=None,
                      latency_table=None, **plan_kwargs):
    """(pruned model, [plan per step]). `fine_tune(model, step)` (optional) is called
    after every step and returns the model to go on with (None: keep it). Absolute
    targets become fractions of the original first, so every step aims at a share of
    the way."""
    key, value = check_target(target)
    if isinstance(iterative_steps, bool) or not isinstance(iterative_steps, int) \
            or iterative_steps < 1:
        raise ValueError("iterative_steps must be an integer >= 1. "
                         f"Received: iterative_steps={iterative_steps!r}")
    if key in ("latency_ms", "latency") and latency_table is None:
        raise ValueError(f"target {target!r} needs latency_table=.")
    if isinstance(latency_table, str):
        from keras_slim.latency import LatencyTable
        latency_table = LatencyTable.load(latency_table)
    cost_key = "latency_ms" if key in ("latency_ms", "latency") else key
    costs = CostModel(ChannelGraph(model), latency_table)
    original = costs.cost(cost_key)
    fraction = value if key == "latency" or (key != "latency_ms" and value <= 1) \
        else value / original
    plans, current = [], model
    for step in range(1, iterative_steps + 1):
        graph = ChannelGraph(current)
        now = CostModel(graph, latency_table).cost(cost_key)
        goal = original * fraction ** (step / iterative_steps)
        step_target = {"latency_ms": goal} if cost_key == "latency_ms" \
            else {key: min(1.0, goal / now)}
        current, plan = prune(current, criterion, target=step_target, graph=graph,
                              latency_table=latency_table, **plan_kwargs)
        plan.meta["step"] = step
        plans.append(plan)
        if fine_tune is not None:
            tuned = fine_tune(current, step)
            current = tuned if tuned is not None else current
    return current, plans
