"""Network Slimming: SlimBatchNormalization, λ control, conversion, γ plans. Both flavours."""

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim import slimming as S

RNG = np.random.default_rng(0)
X = RNG.random((6, 6, 6, 3)).astype("float32")
Y = RNG.random((6, 3)).astype("float32")


def make_model(scale2=True):
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(h)
    h = keras.layers.BatchNormalization(name="bn2", scale=scale2)(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(6, name="fc1")(h)
    h = keras.layers.BatchNormalization(name="bn3")(h)  # after Dense: one γ per neuron
    out = keras.layers.Dense(3, name="out")(h)
    model = keras.Model(x, out, name="net")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial BN statistics so conversions are tested
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([(rng.random(w.shape) + 0.5).astype("float32")
                               for w in layer.get_weights()])
    return model


def slim_model(l1=1e-3):
    return S.slimmable(make_model(), l1=l1)


def gammas(model):
    return {n: np.asarray(l.gamma) for n, l in S.slim_layers(model).items()}


def hand_penalty(model, l1):
    return l1 * sum(np.abs(g).sum(dtype=np.float64) for g in gammas(model).values())


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


# --- the layer ------------------------------------------------------------------------
def test_penalty_equals_lambda_times_l1_of_gamma():
    model = slim_model(2e-3)
    model(X, training=True)
    assert len(model.losses) == 3
    got = float(sum(float(v) for v in model.losses))
    assert got == pytest.approx(hand_penalty(model, 2e-3), rel=1e-6)
    assert S.sparsity_penalty(model) == pytest.approx(got, rel=1e-6)


def test_penalty_gradient_shrinks_every_gamma_by_lr_lambda():
    model, l1, lr = slim_model(0.5), 0.5, 0.1
    layers = list(S.slim_layers(model).values())
    for layer in layers:  # mixed signs: the step must move each γ toward 0
        g = np.asarray(layer.gamma)
        layer.gamma.assign(g * np.where(np.arange(g.size) % 2, -1, 1).astype("float32"))
    before = gammas(model)
    with tf.GradientTape() as tape:
        model(X, training=True)
        penalty = tf.add_n(model.losses)
    variables = [l.gamma for l in layers]
    grads = tape.gradient(penalty, variables)
    keras.optimizers.SGD(lr).apply_gradients(zip(grads, variables))
    after = gammas(model)
    for name in before:
        np.testing.assert_allclose(np.abs(after[name]), np.abs(before[name]) - lr * l1,
                                   atol=1e-6)
        assert (np.sign(after[name]) == np.sign(before[name])).all()


def test_penalty_under_mixed_float16_policy():
    # The policy autocasts variables read in call() (λ too) to float16; the penalty
    # must stay float32 and equal λ·Σ|γ| (to float16's rounding of γ).
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = slim_model(2e-3)
        model(X, training=True)
        assert all(v.dtype == tf.float32 for v in model.losses)
        got = float(sum(float(v) for v in model.losses))
        assert got == pytest.approx(hand_penalty(model, 2e-3), rel=1e-3)
        model.compile(keras.optimizers.SGD(0.01), "mse")
        assert np.isfinite(model.fit(X, Y, verbose=0).history["loss"][0])
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_l1_must_be_non_negative_number():
    for bad in (-1e-4, float("nan"), "x"):
        with pytest.raises(ValueError, match="l1"):
            S.SlimBatchNormalization(l1=bad)
        with pytest.raises(ValueError, match="l1"):
            S.slimmable(make_model(), l1=bad)
    with pytest.raises(ValueError, match="value"):
        S.set_l1(slim_model(), -1.0)


def test_config_round_trip():
    layer = S.SlimBatchNormalization(l1=3e-4, name="s")
    clone = S.SlimBatchNormalization.from_config(layer.get_config())
    assert clone.l1 == pytest.approx(3e-4) and clone.name == "s"


# --- conversion ---------------------------------------------------------------------------
def test_slimmable_preserves_outputs_and_user_model():
    model = make_model()
    before = snapshot(model)
    slim = S.slimmable(model, l1=1e-3)
    kinds = {l.name: type(l) for l in slim.layers}
    assert all(kinds[n] is S.SlimBatchNormalization for n in ("bn1", "bn2", "bn3"))
    assert slim is not model
    assert np.abs(model.predict(X, verbose=0) - slim.predict(X, verbose=0)).max() <= 1e-6
    slim.compile(keras.optimizers.SGD(0.1), "mse")
    slim.fit(X, Y, epochs=1, verbose=0)
    after = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not any(isinstance(l, S.SlimBatchNormalization) for l in model.layers)


def test_slimmable_sequential_and_nested():
    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4),
                            keras.layers.BatchNormalization(name="sbn"),
                            keras.layers.Dense(2)], name="seq")
    x = keras.Input((5,))
    outer = keras.Model(x, keras.layers.Dense(2)(seq(x)), name="outer")
    data = RNG.random((4, 5)).astype("float32")
    for model in (seq, outer):
        slim = S.slimmable(model)
        assert list(S.slim_layers(slim)) == (["sbn"] if model is seq else ["seq/sbn"])
        assert np.abs(model.predict(data, verbose=0)
                      - slim.predict(data, verbose=0)).max() <= 1e-6


def test_strip_gives_plain_bn_same_outputs():
    slim = slim_model()
    slim.compile(keras.optimizers.SGD(0.05), "mse")
    slim.fit(X, Y, epochs=1, verbose=0)
    before = snapshot(slim)
    plain = S.strip(slim)
    bns = [l for l in plain.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 3 and all(type(l) is keras.layers.BatchNormalization for l in bns)
    assert np.abs(plain.predict(X, verbose=0) - slim.predict(X, verbose=0)).max() <= 1e-6
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(slim)))
    plain(X, training=True)
    assert not plain.losses


def test_keras_file_round_trip(tmp_path):
    slim = slim_model(2e-3)
    S.set_l1(slim, 5e-3)
    path = str(tmp_path / "slim.keras")
    slim.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("bn1"), S.SlimBatchNormalization)
    assert loaded.get_layer("bn1").l1 == pytest.approx(5e-3)
    assert np.abs(loaded.predict(X, verbose=0) - slim.predict(X, verbose=0)).max() <= 1e-6


def test_scale_false_is_skipped_with_warning_or_error():
    model = make_model(scale2=False)
    with pytest.warns(UserWarning, match="bn2"):
        slim = S.slimmable(model)
    assert type(slim.get_layer("bn2")) is keras.layers.BatchNormalization
    assert isinstance(slim.get_layer("bn1"), S.SlimBatchNormalization)
    assert np.abs(model.predict(X, verbose=0) - slim.predict(X, verbose=0)).max() <= 1e-6
    with pytest.raises(ValueError, match="bn2"):
        S.slimmable(make_model(scale2=False), on_no_scale="error")


def test_model_without_bn_is_refused():
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2)(x), name="x")
    with pytest.raises(ValueError, match="model 'x' has no BatchNormalization layer"):
        S.slimmable(model)


# --- λ during training ------------------------------------------------------------------
def test_changing_lambda_needs_no_recompile():
    slim = slim_model(1e-3)
    slim.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: weights stay, only λ moves
    slim.fit(X, Y, epochs=1, verbose=0)
    loss_a = slim.evaluate(X, Y, verbose=0)
    S.set_l1(slim, 1e-1)
    loss_b = slim.evaluate(X, Y, verbose=0)
    assert loss_b - loss_a == pytest.approx(hand_penalty(slim, 1e-1 - 1e-3), rel=1e-3)
    history = slim.fit(X, Y, epochs=1, verbose=0, callbacks=[S.SparsityPenalty()])
    assert history.history["sparsity_penalty"][0] == pytest.approx(
        hand_penalty(slim, 1e-1), rel=1e-5)


def test_l1_schedule_logs_lambda_and_penalty():
    slim = slim_model()
    slim.compile(keras.optimizers.SGD(0.0), "mse")
    warmup = S.L1Schedule(lambda epoch: 1e-3 * min(1.0, (epoch + 1) / 2))
    history = slim.fit(X, Y, epochs=3, verbose=0, callbacks=[warmup])
    assert history.history["l1"] == pytest.approx([5e-4, 1e-3, 1e-3])
    penalties = history.history["sparsity_penalty"]
    assert penalties == pytest.approx([hand_penalty(slim, l) for l in (5e-4, 1e-3, 1e-3)],
                                      rel=1e-5)
    constant = slim.fit(X, Y, epochs=1, verbose=0, callbacks=[S.L1Schedule(2e-3)])
    assert constant.history["l1"] == pytest.approx([2e-3])
    with pytest.raises(ValueError, match="schedule"):
        slim.fit(X, Y, epochs=1, verbose=0, callbacks=[S.L1Schedule(lambda e: -1.0)])
    with pytest.raises(ValueError, match="schedule"):
        S.L1Schedule(float("nan"))


# --- scores and plans ---------------------------------------------------------------------
def _distinct_gammas(model):
    values = np.linspace(0.01, 1.0, 8 + 8 + 6)[np.random.default_rng(2).permutation(22)]
    start = 0
    for layer in S.slim_layers(model).values():
        n = layer.gamma.shape[0]
        layer.gamma.assign(values[start:start + n].astype("float32"))
        start += n


def test_gamma_scores_and_nan_error():
    slim = slim_model()
    scores = S.gamma_scores(slim)
    assert set(scores) == {"bn1", "bn2", "bn3"}
    np.testing.assert_array_equal(scores["bn1"], np.abs(np.asarray(slim.get_layer("bn1").gamma)))
    g = np.asarray(slim.get_layer("bn3").gamma).copy()
    g[1] = np.nan
    slim.get_layer("bn3").gamma.assign(g)
    with pytest.raises(ValueError, match="γ of layer 'bn3' became NaN"):
        S.gamma_scores(slim)
    with pytest.raises(ValueError, match="bn3"):
        S.gamma_plan(slim, 0.5)


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_gamma_plan_removes_global_quantile(ratio):
    slim = slim_model()
    _distinct_gammas(slim)
    scores = S.gamma_scores(slim)
    # bn3 feeds the output Dense, which is prunable too: all 22 channels are in play.
    pool = np.concatenate(list(scores.values()))
    threshold = np.quantile(pool, ratio, method="lower")
    plan = S.gamma_plan(slim, ratio, round_to=1)
    assert plan.meta["criterion"] == "bn_gamma"
    groups = {g.name: g for g in plan.groups}
    for bn, conv in (("bn1", "conv1"), ("bn2", "conv2"), ("bn3", "fc1")):
        expected = sorted(np.flatnonzero(scores[bn] > threshold).tolist())
        if expected:
            assert groups[conv].keep == expected
        else:  # every channel below the threshold: the floor keeps the best one
            assert groups[conv].keep == [int(np.argmax(scores[bn]))]
    floor = sum(1 for bn in scores if (scores[bn] <= threshold).all())
    assert sum(g.removed for g in plan.groups) == int((pool <= threshold).sum()) - floor


def test_gamma_plan_extreme_ratio_and_bad_ratio(capsys):
    slim = slim_model()
    _distinct_gammas(slim)
    plan = S.gamma_plan(slim, 0.99, round_to=1)
    assert all(len(g.keep) >= 1 for g in plan.groups)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            S.gamma_plan(slim, bad)
    table = S.dry_run(slim, 0.5, round_to=1)
    assert "conv1" in table and "removed" in table and table in capsys.readouterr().out
    layer_plan = S.gamma_plan(slim, 0.5, scope="layer", round_to=1)
    assert [g.removed for g in layer_plan.groups] == [4, 4, 3]


def test_sparsity_summary_and_gamma_logger(tmp_path, capsys):
    slim = slim_model()
    _distinct_gammas(slim)
    summary = S.sparsity_summary(slim, threshold=0.3)
    pool = np.concatenate(list(S.gamma_scores(slim).values()))
    assert summary["overall"]["below"] == int((pool < 0.3).sum())
    assert summary["overall"]["share"] == pytest.approx((pool < 0.3).mean())
    assert sum(summary["layers"]["bn1"]["counts"]) == 8
    assert sum(summary["overall"]["counts"]) == 22
    slim.compile(keras.optimizers.SGD(0.0), "mse")
    history = slim.fit(X, Y, epochs=1, verbose=0,
                       callbacks=[S.GammaLogger(str(tmp_path), threshold=0.3)])
    assert history.history["gamma_sparsity"] == pytest.approx([summary["overall"]["share"]])
    assert "of |γ| < 0.3" in capsys.readouterr().out
    # TensorBoard histograms (the paper's Fig. 4), per layer and overall.
    tags = {}
    for event_file in tmp_path.rglob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags[value.tag] = value.metadata.plugin_data.plugin_name
    assert tags.get("gamma/all") == "histograms"
    assert sum(1 for t, plugin in tags.items() if plugin == "histograms") >= 2


def test_plan_rebuilds_slim_model_without_touching_it():
    from keras_slim.core.rebuild import mask, rebuild
    slim = slim_model()
    _distinct_gammas(slim)
    before = snapshot(slim)
    plan = S.gamma_plan(slim, 0.4, round_to=1)
    small = rebuild(slim, plan)
    assert isinstance(small.get_layer("bn1"), S.SlimBatchNormalization)  # still trainable
    assert small.get_layer("bn1").gamma.shape[0] == len(plan.groups[0].keep)
    assert np.abs(small.predict(X, verbose=0)
                  - mask(slim, plan).predict(X, verbose=0)).max() <= 1e-5
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(slim)))
