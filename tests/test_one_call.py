"""keras_slim.slim: the one-call pipeline equals the steps it wraps, forwards target=,
and leaves the user's model alone."""
import functools

import numpy as np
import pytest
import tensorflow as tf

import keras_slim as ks
from keras_slim.compat import keras
from keras_slim.core import criteria
from keras_slim.slimming import pipeline as steps
from keras_slim.training import distillation


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    h = inputs
    for i, width in enumerate((16, 16)):
        h = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


def test_slim_equals_the_step_by_step_pipeline_on_the_same_seed():
    train, val = _data(), _data(64, 1)
    model = _model()
    keras.utils.set_random_seed(7)
    result = ks.slim(model, train, method="slimming", ratio=0.5, validation_data=val,
                     sparsity_epochs=2, finetune_epochs=2, l1=1e-3, learning_rate=0.05,
                     round_to=1, verbose=0)

    keras.utils.set_random_seed(7)
    compile_fn = lambda m: steps.default_compile(m, 0.05)  # noqa: E731
    slim_model, _ = steps.sparsity_train(model, train, 2, 1e-3, compile_fn, verbose=0)
    pruned, plan, _ = steps.prune(slim_model, 0.5, round_to=1)
    teacher = distillation.frozen_copy(ks.strip(slim_model))
    small, _ = steps.finetune(ks.strip(pruned), train, 2, compile_fn, verbose=0,
                              teacher=teacher)

    def evaluate(m):
        return float(compile_fn(m).evaluate(val, verbose=0, return_dict=True)["accuracy"])

    assert result.report["accuracy_after"] == pytest.approx(evaluate(small), abs=1e-6)
    # the report follows the accuracy through the phases, each on the same data
    assert result.report["accuracy_sparse"] == pytest.approx(evaluate(slim_model), abs=1e-6)
    assert result.report["accuracy_pruned"] == pytest.approx(evaluate(pruned), abs=1e-6)
    assert result.plan.to_dict()["groups"] == plan.to_dict()["groups"]
    assert result.report["params_after"] < result.report["params_before"]
    assert result.model.count_params() == small.count_params()


def test_l1_method_prunes_fine_tunes_with_a_teacher_and_leaves_the_model_alone():
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    val = _data(64, 1)
    result = ks.slim(model, _data(), method="l1", ratio=0.5, round_to=1, verbose=0,
                     pretrained=True, validation_data=val)
    assert result.model.count_params() < model.count_params()
    pruned, _ = criteria.prune(model, "l1_norm", 0.5, round_to=1)
    steps.default_compile(pruned)
    assert result.report["accuracy_pruned"] == pytest.approx(
        float(pruned.evaluate(val, verbose=0, return_dict=True)["accuracy"]), abs=1e-6)
    assert "accuracy_sparse" not in result.report  # no sparsity phase in "l1"
    assert "distillation_loss" in result.histories[-1][1]
    # a trained model's default: 3 fine-tune epochs (1 from scratch)
    assert len(result.histories[-1][1]["loss"]) == 3 == ks.pipeline.defaults(True)[
        "finetune_epochs"] > ks.pipeline.defaults(False)["finetune_epochs"]
    for w, w0 in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(w, w0)
    assert all(layer.trainable for layer in model.layers)


@pytest.mark.parametrize("method, pretrained, given, expected", [
    ("l1", True, {}, 0.02), ("slimming", True, {}, 0.02),
    ("l1", True, {"finetune_learning_rate": 0.01}, 0.01),
    ("l1", True, {"learning_rate": 0.001}, 0.001),  # a rate given alone drives both
    ("slimming", False, {"learning_rate": 0.03}, 0.03)])
def test_the_fine_tune_runs_at_its_own_learning_rate(monkeypatch, method, pretrained, given,
                                                     expected):
    real, rates = steps.finetune, []

    def spy(model, data, epochs, compile_fn, *args, **kwargs):
        rates.append(float(compile_fn(_model()).optimizer.learning_rate))
        return real(model, data, epochs, compile_fn, *args, **kwargs)

    monkeypatch.setattr(steps, "finetune", spy)
    ks.slim(_model(), _data(), method=method, ratio=0.5, round_to=1, verbose=0,
            pretrained=pretrained, sparsity_epochs=1, finetune_epochs=1, distill=False,
            **given)
    assert rates == [pytest.approx(expected)]


def test_dce_has_no_separate_fine_tune_rate():
    with pytest.raises(ValueError, match="finetune_learning_rate is not available with "
                                         "method='dce'"):
        ks.slim(_model(), _data(), method="dce", finetune_learning_rate=0.01, verbose=0)


def test_dce_takes_run_dce_options_and_refuses_plan_options(monkeypatch):
    from keras_slim.dce import pipeline as dce_pipeline

    with pytest.raises(ValueError, match=r"method='dce' does not take normalizer, scope "
                                         r"\(its plan keeps 1 - ratio.*warmup_steps"):
        ks.slim(_model(), _data(), method="dce", normalizer="mean", scope="layer",
                verbose=0)
    seen = {}
    real = dce_pipeline.run_dce

    @functools.wraps(real)  # slim reads run_dce's signature
    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(dce_pipeline, "run_dce", spy)
    result = ks.slim(_model(), _data(), method="dce", ratio=0.5, sparsity_epochs=1,
                     finetune_epochs=0, round_to=1, verbose=0, warmup_steps=2, seed=3)
    assert seen["warmup_steps"] == 2 and seen["seed"] == 3 and seen["fraction"] == 0.5
    assert result.report["params_after"] < result.report["params_before"]


def test_target_is_forwarded_to_criteria_prune(monkeypatch):
    seen = {}
    real = criteria.prune

    def spy(model, criterion, ratio, **kwargs):
        seen.update(kwargs, ratio=ratio)
        return real(model, criterion, ratio, **kwargs)

    monkeypatch.setattr(criteria, "prune", spy)
    model = _model()
    result = ks.slim(model, _data(), method="l1", target={"macs": 0.5}, round_to=1,
                     verbose=0, distill=False)
    assert seen["target"] == {"macs": 0.5} and seen["ratio"] is None  # the target decides
    assert result.report["macs_after"] <= 0.5 * result.report["macs_before"]
    seen.clear()
    ks.slim(_model(), _data(), method="l1", ratio=0.5, round_to=1, verbose=0, distill=False)
    assert "target" not in seen


def test_bad_method_is_a_clear_error():
    with pytest.raises(ValueError, match="method must be one of"):
        ks.slim(_model(), _data(), method="magic")


def test_defaults_differ_for_pretrained_models():
    scratch, pretrained = ks.pipeline.defaults(False), ks.pipeline.defaults(True)
    assert pretrained["epochs"] < scratch["epochs"]
    assert pretrained["learning_rate"] < scratch["learning_rate"]
    assert pretrained["fade"] and pretrained["l1"] == 0.0 and not scratch["fade"]
    # without the fade a trained model needs a λ: 10× below the from-scratch one
    assert ks.pipeline.defaults(True, fade=False)["l1"] == scratch["l1"] / 10
    assert ks.pipeline.defaults(False, fade=True)["l1"] == 0.0


def _gap_head_model(seed=0):
    """Every consumer of a BN channel is 1×1 or GAP → Dense: a zero-γ channel folds
    exactly."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", name="conv0")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn0")(h))
    h = keras.layers.Conv2D(16, 1, name="conv1")(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


def test_pretrained_slimming_fades_the_removed_channels_so_the_prune_is_exact():
    val = _data(64, 1)
    result = ks.slim(_gap_head_model(), _data(), ratio=0.5, pretrained=True,
                     finetune_epochs=0, validation_data=val, round_to=1, verbose=0,
                     distill=False)
    # no λ, but the removed channels are exactly 0: pruning them changes nothing
    assert result.report["accuracy_pruned"] == pytest.approx(
        result.report["accuracy_sparse"], abs=1e-6)
    assert result.report["params_after"] < result.report["params_before"]
    fade_off = ks.slim(_gap_head_model(), _data(), ratio=0.5, pretrained=True, fade=False,
                       l1=0.0, finetune_epochs=0, validation_data=val, round_to=1,
                       verbose=0, distill=False)
    assert "faded_channels" not in fade_off.histories[0][1]
    removed = result.plan.total_channels - result.plan.kept_channels
    assert removed > 0 and result.histories[0][1]["faded_channels"] == [float(removed)]


def test_slimming_without_a_sparsity_phase_reports_what_it_measured():
    result = ks.slim(_model(), _data(), method="slimming", ratio=0.5, sparsity_epochs=0,
                     finetune_epochs=0, validation_data=_data(64, 1), round_to=1, verbose=0,
                     distill=False)
    assert "accuracy_sparse" not in result.report  # no sparsity epoch, nothing measured
    # no fine-tuning either: the final model is the pruned one
    assert result.report["accuracy_after"] == pytest.approx(result.report["accuracy_pruned"],
                                                           abs=1e-6)
