"""Cost targets (MACs, params, latency) and latency tables: build, file, import, greedy."""
import json
import os

import numpy as np
import pytest

from keras_slim.compat import keras
from keras_slim.core import metrics
from keras_slim.core.criteria import criterion_plan, prune
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import rebuild
from keras_slim.latency import (LatencyTable, LatencyTableError, build_table,
                                import_op_profile, parse_op_profile, timed_ops)
from keras_slim.latency.signature import signature, signature_key
from keras_slim.zoo import models

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "benchmark_model_op_profile.txt")


def _tiny():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1", activation="relu")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(32, 1, name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x), name="tiny")


def _costs_of(model):
    p = metrics.profile(model)
    return {"macs": p["macs"], "params": p["params"]}


@pytest.mark.parametrize("name,shape", [("vgg_small", (16, 16, 1)), ("resnet20", (16, 16, 3))])
@pytest.mark.parametrize("criterion", ["bn_gamma", "l1_norm", "random"])
def test_macs_and_params_targets_within_one_step(name, shape, criterion):
    model = models.build(name, input_shape=shape)
    graph = ChannelGraph(model)
    steps = sum(int(g.prunable.sum()) for g in graph.groups)
    full = _costs_of(model)
    for key, value in (("macs", 0.5), ("params", 0.3)):
        plan = criterion_plan(graph, criterion, target={key: value})
        pruned = rebuild(model, plan, graph=graph)
        got = _costs_of(pruned)
        assert plan.meta["achieved"] == got  # counted without rebuilding = rebuilt
        assert got[key] <= value * full[key]
        # one step less of the ranking misses the target
        k = round(plan.meta["ratio"] * steps)
        before = rebuild(model, criterion_plan(graph, criterion, (k - 1) / steps), graph=graph)
        assert _costs_of(before)[key] > value * full[key]


def test_absolute_macs_target_on_mobilenet_v2():
    model = models.build("mobilenet_v2", input_shape=(32, 32, 3))
    goal = 30_000_000
    pruned, plan = prune(model, "l1_norm", target={"macs": goal}, min_fraction=0.25)
    assert metrics.profile(pruned)["macs"] == plan.meta["achieved"]["macs"] <= goal
    assert plan.meta["achieved"]["macs"] > 0.9 * goal


@pytest.mark.parametrize("target,message", [
    ({"flops": 0.5}, "target key must be one of"),
    ({"macs": -1}, "positive number"),
    ({"macs": 0.5, "params": 0.5}, "a dict with one of the keys"),
    ({"latency": 2.0}, "fraction of the original"),
    ({"latency_ms": 1.0}, "needs latency_table"),
])
def test_bad_target_is_one_clear_error(target, message):
    with pytest.raises(ValueError, match=message):
        criterion_plan(_tiny(), "l1_norm", target=target)


def test_ratio_and_target_are_exclusive():
    with pytest.raises(ValueError, match="exactly one of ratio"):
        criterion_plan(_tiny(), "l1_norm", 0.5, target={"macs": 0.5})
    with pytest.raises(ValueError, match="exactly one of ratio"):
        criterion_plan(_tiny(), "l1_norm")


def test_macs_target_unreachable_names_the_floor():
    with pytest.raises(ValueError, match="cannot be reached"):
        criterion_plan(_tiny(), "l1_norm", target={"macs": 10}, min_fraction=0.5)


def _synthetic_table(graph, step=8):
    """ms = 0.001 per started block of `step` output channels × input channels (a step
    function, like a kernel's channel blocking); overhead 0.1 ms."""
    table = LatencyTable({"litert": "test", "delegate": "xnnpack", "threads": 1,
                          "dtype": "int8"}, {"model": "synthetic", "isa": []}, overhead_ms=0.1)
    for op in timed_ops(graph):
        sig = signature(op)
        cins = list(range(1, sig["cin"] + 1))
        if op.rule.width_follows_input:
            table.add(sig, {"cin": cins, "cout": None,
                            "ms": [0.001 * -(-c // step) for c in cins]})
        else:
            couts = list(range(1, sig["cout"] + 1))
            table.add(sig, {"cin": cins, "cout": couts,
                            "ms": [[0.001 * -(-o // step) * c for o in couts] for c in cins]})
    return table


def test_latency_target_reached_exactly_on_a_synthetic_table_with_floors():
    model = models.build("vgg_small", input_shape=(16, 16, 1))
    graph = ChannelGraph(model)
    table = _synthetic_table(graph)
    full = table.predict_model(graph)
    for criterion in ("l1_norm", "random", "bn_gamma"):
        plan = criterion_plan(graph, criterion, target={"latency": 0.5}, latency_table=table,
                              min_fraction=0.25)
        got = table.predict_model(ChannelGraph(rebuild(model, plan, graph=graph)))
        assert got == pytest.approx(plan.meta["achieved"]["latency_ms"])
        assert got <= 0.5 * full
        for g in plan.groups:  # floors and widths on the table's steps
            assert len(g.keep) >= 0.25 * g.size
            assert len(g.keep) % 8 == 0 or len(g.keep) == g.size
    # without a floor, no layer goes below round_to channels (a ResNet50 stem once went
    # to 1 channel, which XNNPACK's int8 convolution refuses to prepare)
    low = criterion_plan(graph, "l1_norm", target={"latency": 0.2}, latency_table=table)
    assert all(len(g.keep) >= min(8, g.size) for g in low.groups)
    # an attainable figure is hit exactly: the latency of a plan the greedy produced
    goal = plan.meta["achieved"]["latency_ms"]
    again = criterion_plan(graph, "bn_gamma", target={"latency_ms": goal}, latency_table=table,
                           min_fraction=0.25)
    assert again.meta["achieved"]["latency_ms"] == pytest.approx(goal, abs=1e-12)


def test_measured_feedback_lands_a_target_the_table_mispredicts():
    """A 'device' 30% slower than the table says: the first plan misses by ~30%, the
    corrected goals land within the tolerance of the measured target."""
    from keras_slim.latency.landing import plan_for_measured_latency
    model = models.build("vgg_small", input_shape=(16, 16, 1))
    graph = ChannelGraph(model)
    table = _synthetic_table(graph)

    def device_ms(pruned):
        return 1.3 * table.predict_model(ChannelGraph(pruned))

    target = 0.6 * device_ms(model)
    plan = plan_for_measured_latency(model, "l1_norm", target, table, tolerance=0.05,
                                     measure=device_ms, graph=graph, min_fraction=0.25)
    history = plan.meta["measured_latency"]
    assert history[0]["measured_ms"] > 1.2 * target  # the table alone misses
    assert len(history) >= 2 and abs(plan.meta["measured_ms"] / target - 1) <= 0.05
    assert plan.meta["measured_ms"] == pytest.approx(
        device_ms(rebuild(model, plan, graph=graph)))
    with pytest.raises(ValueError, match="latency_ms must be a positive number"):
        plan_for_measured_latency(model, "l1_norm", 0, table, measure=device_ms)
    # the same through prune(measure_latency=True), which rebuilds the chosen plan
    pruned, again = prune(model, "l1_norm", target={"latency_ms": target}, latency_table=table,
                          measure_latency=True, measure=device_ms, min_fraction=0.25)
    assert [len(g.keep) for g in again.groups] == [len(g.keep) for g in plan.groups]
    assert device_ms(pruned) == pytest.approx(again.meta["measured_ms"])
    with pytest.raises(ValueError, match="measure_latency needs target"):
        prune(model, "l1_norm", target={"macs": 0.5}, measure_latency=True)


def test_latency_greedy_spends_removals_where_importance_per_ms_is_lowest():
    model = _tiny()
    graph = ChannelGraph(model)
    table = _synthetic_table(graph)
    scores = {"c1": np.full(16, 10.0), "c3": np.full(32, 1.0)}  # c3's channels matter least
    from keras_slim.core.targets import CostModel, latency_greedy
    costs = CostModel(graph, table)
    plan = latency_greedy(graph, scores, costs, costs.latency_ms() - 0.05, round_to=8)
    kept = {g.name: len(g.keep) for g in plan.groups}
    assert kept == {"c1": 16, "c3": 16}
    normalised = latency_greedy(graph, scores, costs, costs.latency_ms() - 0.05,
                                round_to=8, normalizer="mean")
    assert normalised.meta["normalizer"] == "mean" and "normalizer" not in plan.meta


def test_table_build_save_load_and_prediction(tmp_path):
    model = _tiny()
    graph = ChannelGraph(model)
    path = str(tmp_path / "latency.json")
    table = build_table(model, cache=path, fractions=(0.5, 1.0), runs=3, verbose=0)
    assert {p for p, *_ in table.per_layer(graph)} == {"c1", "dw", "c3", "head"}
    assert all(ms >= 0 for *_, ms in table.per_layer(graph))
    loaded = LatencyTable.load(path)
    assert loaded.entries == json.loads(json.dumps(table.entries))
    assert loaded.predict_model(graph) == pytest.approx(table.predict_model(graph))
    assert (loaded.scale, loaded.output_ms) == (table.scale, table.output_ms)
    assert loaded.runtime["dtype"] == "int8" and loaded.runtime["threads"] == 1
    # the cache is reused: nothing left to measure, same entries
    again = build_table(model, cache=path, fractions=(0.5, 1.0), runs=3, verbose=0,
                        fit_overhead=False)
    assert again.entries == loaded.entries


def test_the_fit_reproduces_the_model_and_its_pruned_copies(monkeypatch):
    """A fake runtime where a model costs 0.3 ms + 2e-6 ms per MAC, and whole models also
    1e-6 ms per output value of their layers (the element-wise ops a probe lacks): the
    fitted table must predict the unpruned model and every copy exactly."""
    from keras_slim.latency import probe
    from keras_slim.latency.table import output_values
    timed = []  # (model, ms) in call order: the probes, then the model and its copies

    def fake_ms(model, *settings):
        ms = 0.3 + 2e-6 * metrics.profile(model)["macs"]
        if len(model.layers) > 2:  # not a probe (input + one layer)
            graph = ChannelGraph(model)
            ms += 1e-6 * sum(output_values(op, op.out_channels(0)) for op in timed_ops(graph))
        timed.append((model, ms))
        return ms

    monkeypatch.setattr(probe, "timing_tflite", lambda model, dtype: model)  # no conversion
    monkeypatch.setattr(probe, "_time_ms", fake_ms)
    model = _tiny()
    graph = ChannelGraph(model)
    table = build_table(graph, fractions=(0.5, 1.0), verbose=0, rounds=2)
    fitted = [(m, ms) for m, ms in timed if len(m.layers) > 2][-3:]  # rounds=2: last round
    (full, full_ms), *copies = fitted
    assert full is model and len(copies) == 2  # half and a quarter of the width
    assert all(ms < full_ms for _, ms in copies)
    assert table.overhead_ms == pytest.approx(0.3) and table.scale == pytest.approx(1.0)
    assert table.output_ms == pytest.approx(1.0)
    for copy, ms in fitted:
        assert table.predict_model(ChannelGraph(copy)) == pytest.approx(ms, rel=1e-6)
    loaded = LatencyTable(table.runtime, table.processor, table.entries, table.overhead_ms,
                          scale=table.scale, output_ms=table.output_ms)
    assert loaded.predict_model(graph) == pytest.approx(full_ms, rel=1e-6)


def _swish_net():
    """Two conv stages, one ending in swish (TFLite runs it as an op of its own), one in
    relu (fused into its convolution)."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("swish", name="swish")(x)
    x = keras.layers.Conv2D(16, 1, use_bias=False, name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="swish_net")


def test_unfused_activations_are_timed_as_layers_of_their_own(monkeypatch):
    """A fake runtime where swish costs 5e-5 ms per value (MobileNetV3's hard-swish is
    about half its int8 latency) and relu nothing: the swish layer gets an entry of its
    own, so a plan that thins the two stages unevenly is predicted exactly."""
    from keras_slim.latency import probe

    def swish_values(model):
        return sum(int(np.prod(layer.output.shape[1:])) for layer in model.layers
                   if isinstance(layer, keras.layers.Activation)
                   and layer.get_config()["activation"] not in ("relu", "linear"))

    def fake_ms(model, *settings):
        return 0.3 + 2e-6 * metrics.profile(model)["macs"] + 5e-5 * swish_values(model)

    monkeypatch.setattr(probe, "timing_tflite", lambda model, dtype: model)
    monkeypatch.setattr(probe, "_time_ms", fake_ms)
    model = _swish_net()
    graph = ChannelGraph(model)
    assert [op.path for op in timed_ops(graph)] == ["c1", "swish", "c2", "head"]
    table = build_table(graph, fractions=(0.5, 1.0), verbose=0)
    swish = next(op for op in graph.ops if op.path == "swish")
    assert table.entry_ms(swish) == pytest.approx(5e-5 * 8 * 8 * 16)
    assert table.entry_ms(swish, 8) == pytest.approx(5e-5 * 8 * 8 * 8)
    assert (table.overhead_ms, table.scale, table.output_ms) == pytest.approx((0.3, 1, 0))
    plan = criterion_plan(graph, "l1_norm", 0.3, round_to=1)
    thinned = rebuild(model, plan, graph=graph)
    assert table.predict_model(ChannelGraph(thinned)) == pytest.approx(fake_ms(thinned))


def test_relu_and_relu6_fuse_and_other_activations_run_alone():
    layers = keras.layers
    x = inputs = keras.Input((4, 4, 8))
    for n, activation in enumerate([layers.ReLU(), layers.ReLU(6.0), layers.Activation("relu"),
                                    layers.ReLU(1.0), layers.LeakyReLU(),
                                    layers.Activation("sigmoid")]):
        x = activation(layers.Conv2D(8, 1, name=f"conv{n}")(x))
    graph = ChannelGraph(keras.Model(inputs, x))
    alone = [op.class_name for op in timed_ops(graph) if not op.path.startswith("conv")]
    assert alone == ["ReLU", "LeakyReLU", "Activation"]
    # ReLU(1.0) runs alone and must not share an entry with a fused ReLU() or ReLU(6.0)
    relus = [op for op in graph.ops if op.class_name == "ReLU"]
    assert len({signature_key(signature(op)) for op in relus}) == 3


def test_bad_table_file_is_one_clear_error_naming_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LatencyTableError, match="bad.json' is not valid JSON"):
        LatencyTable.load(str(bad))
    other = tmp_path / "plan.json"
    other.write_text(json.dumps({"format": "keras_slim.ChannelPlan/1"}))
    with pytest.raises(LatencyTableError, match="plan.json' is not a keras_slim latency table"):
        LatencyTable.load(str(other))
    with pytest.raises(LatencyTableError, match="missing.json' does not exist"):
        criterion_plan(_tiny(), "l1_norm", target={"latency_ms": 1.0},
                       latency_table=str(tmp_path / "missing.json"))


def test_import_benchmark_model_op_profile():
    rows = parse_op_profile(FIXTURE)
    assert [r["node_type"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                                              "MEAN", "FULLY_CONNECTED"]
    assert rows[0]["avg_ms"] == 0.090
    graph = ChannelGraph(_tiny())
    table = import_op_profile(FIXTURE, graph)
    assert table.runtime["threads"] == 4 and table.source == "benchmark_model"
    per_layer = {p: ms for p, _, _, ms in table.per_layer(graph)}
    assert per_layer["c1"] == pytest.approx(0.090)
    assert per_layer["dw"] == pytest.approx(0.040)
    assert per_layer["c3"] == pytest.approx(0.050)
    assert per_layer["head"] is None  # the FC node's name does not name the layer
    assert table.overhead_ms == pytest.approx(0.020)
    # one point per layer: half the output channels, half the time
    c3 = graph.op_by_path["c3"]
    assert table.predict(c3, 16, 16) == pytest.approx(0.025)


def test_profile_without_the_section_is_a_clear_error():
    with pytest.raises(LatencyTableError, match="Operator-wise Profiling Info"):
        parse_op_profile("Inference timings in us: 200\n")


def test_iterative_steps_reach_the_target_with_fine_tuning_between():
    model = models.build("vgg_small", input_shape=(16, 16, 1))
    full = metrics.profile(model)["macs"]
    seen = []

    def fine_tune(m, step):
        seen.append((step, metrics.profile(m)["macs"]))

    from keras_slim.core.iterative import prune_iteratively
    pruned, plans = prune_iteratively(model, "l1_norm", {"macs": 0.4}, iterative_steps=2,
                                      fine_tune=fine_tune)
    assert [s for s, _ in seen] == [1, 2] and len(plans) == 2
    assert seen[0][1] <= 0.4 ** 0.5 * full and seen[0][1] > 0.4 * full
    assert metrics.profile(pruned)["macs"] == seen[1][1] <= 0.4 * full


def _run(app_name, *argv):
    import importlib
    from keras_slim.apps import common
    return common.run_in_process(importlib.import_module(f"keras_slim.apps.{app_name}"),
                                 [app_name, *argv])


def test_prune_app_targets(tmp_path, capsys):
    from absl import app
    model = models.build("vgg_small", input_shape=(16, 16, 1))
    path = str(tmp_path / "m.keras")
    model.save(path)
    _run("prune", f"--model_path={path}", "--criterion=l1_norm", "--target_macs=0.5",
         "--dry_run")
    assert "target {'macs': 0.5}: achieved macs=" in capsys.readouterr().out
    table = _synthetic_table(ChannelGraph(model))
    table_path = str(tmp_path / "lat.json")
    table.save(table_path)
    goal = 0.5 * table.predict_model(ChannelGraph(model))
    out = tmp_path / "pruned"
    _run("prune", f"--model_path={path}", "--criterion=l1_norm", f"--output_dir={out}",
         f"--target_latency_ms={goal}", f"--latency_table={table_path}")
    pruned = keras.models.load_model(str(out / "pruned.keras"))
    assert table.predict_model(ChannelGraph(pruned)) <= goal
    with pytest.raises(Exception, match="--target_latency_ms needs --latency_table"):
        _run("prune", f"--model_path={path}", "--target_latency_ms=1.0", "--dry_run")
    with pytest.raises(app.UsageError, match="--measure_latency needs --target_latency_ms"):
        _run("prune", f"--model_path={path}", "--measure_latency", "--dry_run")
    with pytest.raises(app.UsageError, match="--ratio and --target_macs"):
        _run("prune", f"--model_path={path}", "--ratio=0.3", "--target_macs=0.5", "--dry_run")
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(app.UsageError, match="bad.json' is not a keras_slim latency table"):
        _run("prune", f"--model_path={path}", "--target_latency_ms=1.0",
             f"--latency_table={bad}", "--dry_run")


def test_benchmark_app_prints_layers_and_predicted_vs_measured(tmp_path, capsys):
    path = str(tmp_path / "tiny.keras")
    _tiny().save(path)
    _run("benchmark", f"--model_path={path}", "--mode=float32", "--runs=5",
         f"--output_dir={tmp_path / 'bench'}", f"--latency_table={tmp_path / 'lat.json'}")
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out and "dw" in out
    result = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert result["latency_prediction"]["measured_ms"] > 0
    assert LatencyTable.load(str(tmp_path / "lat.json")).runtime["dtype"] == "float32"


def test_latency_plan_of_a_zero_pad_resnet_prices_its_rounded_layers():
    # Rounding each stage of a zero-pad stream adds channels after the greedy: the plan
    # must still meet the target once they are counted.
    model = models.build("resnet20", input_shape=(16, 16, 3))
    graph = ChannelGraph(model)
    table = _synthetic_table(graph)
    full = table.predict_model(graph)
    for criterion in ("random", "l1_norm"):
        for fraction in (0.7, 0.5, 0.35):
            plan = criterion_plan(graph, criterion, target={"latency": fraction},
                                  latency_table=table)
            got = table.predict_model(ChannelGraph(rebuild(model, plan, graph=graph)))
            assert got == pytest.approx(plan.meta["achieved"]["latency_ms"])
            assert got <= fraction * full + 1e-9, (criterion, fraction)


def test_the_fit_keeps_overhead_and_output_cost_non_negative():
    from keras_slim.latency.probe import _fit
    entries, values = np.array([8.0, 4.0, 2.0, 1.0]), np.array([1.0, 0.6, 0.3, 0.2])
    exact = 1.0 + 1.0 * entries + 0.5 * values
    assert _fit(exact, entries, values) == pytest.approx((1.0, 1.0, 0.5))
    # noisy timings whose exact fit has a negative overhead (a pruned model would then
    # predict far too fast): the plausible fit is the scale alone, by weighted least squares
    timed = np.array([8.8, 4.5, 2.1, 1.02])
    design = np.stack([np.ones(4), entries, values], axis=1)
    assert np.linalg.lstsq(design, timed, rcond=None)[0][0] < 0
    weighted = entries / timed
    scale = float(weighted @ np.ones(4) / (weighted @ weighted))
    assert _fit(timed, entries, values) == pytest.approx((0.0, scale, 0.0))
    # every probe as fast as an empty one: the outputs carry the slope, entries as timed
    assert _fit(np.array([3.0, 2.0, 1.5]), np.zeros(3), np.array([1.0, 0.5, 0.25])) \
        == pytest.approx((1.0, 1.0, 2.0))
    # entries far above the model (no plausible exact fit): the scale's lower bound
    assert _fit(np.array([1.0, 0.6, 0.4]), np.array([100.0, 50.0, 25.0]),
                np.array([1.0, 0.5, 0.25])) == pytest.approx((0.0, 0.05, 0.0))
    # two models fit at most two terms: no arbitrary point on a line of exact fits
    assert _fit(np.array([3.0, 2.0]), np.array([2.0, 1.0]), np.array([1.0, 0.5])) \
        == pytest.approx((1.0, 1.0, 0.0))
    # one model: its own latency
    assert _fit(np.array([3.0]), np.array([2.5]), np.array([1.0])) == pytest.approx(
        (0.5, 1.0, 0.0))
    assert _fit(np.array([2.0]), np.array([2.5]), np.array([1.0])) == pytest.approx(
        (0.0, 0.8, 0.0))


def test_measured_feedback_times_a_plan_in_rounds_and_keeps_the_fastest(monkeypatch):
    # one slow round (a drifting CPU) must not steer the feedback loop
    from keras_slim.latency import landing, probe
    rounds = iter([9.0, 5.0, 7.0])
    monkeypatch.setattr(probe, "timing_tflite", lambda model, dtype: model)
    monkeypatch.setattr(probe, "_time_ms", lambda *settings: next(rounds))
    table = LatencyTable({"litert": "test", "delegate": "xnnpack", "threads": 1,
                          "dtype": "int8"}, {"model": "synthetic", "isa": []})
    assert landing._table_runtime_ms(table, runs=3, rounds=3, min_seconds=0)(_tiny()) == 5.0
    with pytest.raises(ValueError, match="rounds=0"):
        landing.plan_for_measured_latency(_tiny(), "l1_norm", 1.0, table, rounds=0)


def test_timing_goes_on_for_min_seconds_past_a_throttled_spell(monkeypatch):
    # a host that throttles for a spell: every round inside it is slow, so the fastest
    # of `rounds` quick rounds is still slow; min_seconds spreads them past the spell
    from keras_slim.latency import probe
    clock = {"now": 0.0}

    def fake_ms(*settings):
        clock["now"] += 0.1
        return 9.0 if clock["now"] < 1.0 else 5.0

    monkeypatch.setattr(probe.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(probe, "timing_tflite", lambda model, dtype: model)
    monkeypatch.setattr(probe, "_time_ms", fake_ms)
    assert probe.measure_model_ms(_tiny(), rounds=3) == 9.0
    clock["now"] = 0.0
    assert probe.measure_model_ms(_tiny(), rounds=3, min_seconds=2.0) == 5.0
    assert 2.0 <= clock["now"] < 2.25  # rounds of 0.1 s until 2 s had passed
