"""Land a latency target as measured, not only as predicted (NetAdapt-style feedback).

A table's prediction of a plan can be off (layers timed alone, interpolation between probe
widths), and a latency-aware plan seeks out exactly the widths where the table is too
optimistic. `plan_for_measured_latency` plans for the target, rebuilds and times the
model in LiteRT (the table's runtime: dtype, threads, delegate), asks the table next for
the plan's predicted latency × target / measured, and plans again, until the measured latency is within
`tolerance` of the target or `steps` plans were tried; it returns the closest plan.

    plan = plan_for_measured_latency(model, "l1_norm", 2.5, table)
    plan.meta["measured_latency"]   # [{"asked_ms", "predicted_ms", "measured_ms"}, ...]
"""
from keras_slim.core.criteria import criterion_plan
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import rebuild

__all__ = ["plan_for_measured_latency"]


def _table_runtime_ms(table, runs, rounds, min_seconds):
    """Time a model in LiteRT at the table's runtime, the fastest of `rounds` rounds and
    `min_seconds` (one round on a shared or drifting CPU can be 20% slow, and the loop
    would chase it)."""
    from keras_slim.latency.probe import measure_model_ms
    runtime = table.runtime

    def measure(model):
        return measure_model_ms(model, dtype=runtime.get("dtype", "int8"),
                                threads=int(runtime.get("threads", 1)),
                                xnnpack=runtime.get("delegate", "xnnpack") == "xnnpack",
                                runs=runs, rounds=rounds, min_seconds=min_seconds)
    return measure


def plan_for_measured_latency(model, criterion, latency_ms, latency_table, tolerance=0.05,
                              steps=4, measure=None, runs=30, rounds=3, min_seconds=0.0,
                              graph=None, **plan_kwargs):
    """The plan whose rebuilt model measures closest to `latency_ms` (see the module
    docstring). `measure(model) -> ms` replaces the LiteRT timing (e.g. a phone).
    Raises ValueError (from the planner) if even the first goal cannot be reached."""
    if not isinstance(latency_ms, (int, float)) or isinstance(latency_ms, bool) \
            or latency_ms <= 0:
        raise ValueError(f"latency_ms must be a positive number. Received: "
                         f"latency_ms={latency_ms!r}")
    if not 0 < tolerance < 1 or int(steps) != steps or steps < 1 \
            or int(rounds) != rounds or rounds < 1:
        raise ValueError(f"tolerance must be in (0, 1), steps and rounds ints >= 1. Received: "
                         f"tolerance={tolerance!r}, steps={steps!r}, rounds={rounds!r}")
    if isinstance(latency_table, str):
        from keras_slim.latency.table import LatencyTable
        latency_table = LatencyTable.load(latency_table)
    graph = graph or ChannelGraph(model)
    measure = measure or _table_runtime_ms(latency_table, runs, rounds, min_seconds)
    goal, history, best = float(latency_ms), [], None
    for step in range(int(steps)):
        try:
            plan = criterion_plan(graph, criterion, target={"latency_ms": goal},
                                  latency_table=latency_table, **plan_kwargs)
        except ValueError:
            if best is None:
                raise
            break  # a corrected goal below the floors: keep the closest plan so far
        ms = float(measure(rebuild(model, plan, graph=graph)))
        history.append({"asked_ms": goal, "predicted_ms": plan.meta["achieved"]["latency_ms"],
                        "measured_ms": ms})
        if best is None or abs(ms - latency_ms) < abs(best[1] - latency_ms):
            best = (plan, ms)
        if abs(ms / latency_ms - 1) <= tolerance:
            break
        # the plan's own prediction, scaled by how far the device was from it
        goal = plan.meta["achieved"]["latency_ms"] * latency_ms / ms
    plan, ms = best
    plan.meta.update(measured_latency=history, measured_ms=ms)
    return plan
