"""Exact-zero γ (ProximalL1), the λ normalised by the number of γ, and GrowingL1. Both
flavours."""
import os

import numpy as np
import pytest

from keras_slim import compat, slimming as S
from keras_slim.compat import keras
from keras_slim.core.criteria import removed_gamma_max
from keras_slim.core.rebuild import rebuild
from keras_slim.serialization import load_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4, 4, 3)).astype("float32")
Y = (X[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def toy(width=8):
    """Conv → BN → ReLU → 1×1 conv → BN → ReLU → GAP → Dense: every consumer of a BN
    channel is 1×1 or Dense, so constant folding is exact."""
    x = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    h = keras.layers.Conv2D(width, 1, name="c2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU(name="r2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h), name="toy")


def train(proximal, optimizer, l1=0.05, epochs=6):
    keras.utils.set_random_seed(0)
    slim = S.slimmable(toy(), l1=l1, proximal=proximal)
    slim.compile(optimizer=optimizer, loss=LOSS)
    callbacks = [S.ProximalL1()] if proximal else []
    slim.fit(X, Y, batch_size=16, epochs=epochs, verbose=0, shuffle=False,
             callbacks=callbacks)
    return slim


def all_gammas(model):
    return np.concatenate(list(S.gamma_scores(model).values()))


@pytest.mark.parametrize("make_optimizer, l1", [
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), 0.6),
    (lambda: keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.05, 4, 0.9)),
     1.0),
], ids=["sgd", "adam_schedule"])
def test_proximal_gives_exact_zeros_where_l1_only_small(make_optimizer, l1):
    plain = all_gammas(train(False, make_optimizer(), l1))
    slim = train(True, make_optimizer(), l1)
    prox = all_gammas(slim)
    zeros = int((prox == 0).sum())
    assert 2 <= zeros < prox.size, prox
    assert (plain > 0).all() and plain.min() < 0.1, plain  # small, never exactly 0
    # prune exactly the zero-γ channels: rebuild is exact without any tolerance
    plan = S.gamma_plan(slim, zeros / prox.size, round_to=1)
    assert removed_gamma_max(slim, plan) == 0.0
    model = S.strip(slim)
    small, report = rebuild(model, plan, gamma_tolerance=0.0, return_report=True)
    assert small.count_params() < model.count_params()
    assert report.exact
    np.testing.assert_allclose(small(X, training=False), model(X, training=False),
                               atol=1e-5)


def test_proximal_layers_add_no_loss_and_threshold_is_lr_times_lambda():
    slim = S.slimmable(toy(), l1=0.5, proximal=True)
    slim(X[:2], training=True)
    assert not slim.losses
    bn = slim.get_layer("bn1")
    before = np.array([0.02, -0.02, 0.5, -0.5, 1.0, 0.0, 0.01, -2.0], "float32")
    bn.gamma.assign(before)
    # a loss with zero gradient: only the proximal step moves γ
    slim.compile(optimizer=keras.optimizers.SGD(0.06), loss=lambda y, p: 0.0 * p)
    slim.fit(X[:16], Y[:16], batch_size=16, epochs=1, verbose=0,
             callbacks=[S.ProximalL1()])
    expected = np.sign(before) * np.maximum(np.abs(before) - 0.06 * 0.5, 0.0)
    np.testing.assert_allclose(np.asarray(bn.gamma), expected, atol=1e-7)


def test_last_learning_rate_evaluates_the_schedule_at_the_last_step():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    model = toy()
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=LOSS)
    model.fit(X[:48], Y[:48], batch_size=16, epochs=1, verbose=0)  # 3 steps
    assert float(compat.last_learning_rate(model.optimizer)) == pytest.approx(0.1 * 0.25)


def test_proximal_needs_proximal_layers():
    slim = S.slimmable(toy(), l1=0.1)
    slim.compile(optimizer="sgd", loss=LOSS)
    with pytest.raises(ValueError, match="proximal=True"):
        slim.fit(X[:16], Y[:16], epochs=1, verbose=0, callbacks=[S.ProximalL1()])


def test_options_survive_save_and_load(tmp_path):
    slim = S.slimmable(toy(), l1=0.3, proximal=True, normalize=True)
    path = os.path.join(tmp_path, "m.keras" if compat.KERAS3 else "m.h5")
    slim.save(path)
    loaded = load_model(path, compile=False)
    layer = loaded.get_layer("bn2")
    assert layer.proximal is True and layer.l1 == pytest.approx(0.3)
    assert layer.l1_scale == pytest.approx(1 / 16)
    plain = S.strip(loaded).get_layer("bn2").get_config()
    assert "proximal" not in plain and "l1_scale" not in plain


def test_normalized_penalty_does_not_grow_with_width():
    penalties = []
    for width in (8, 32):
        slim = S.slimmable(toy(width), l1=0.2, normalize=True)
        for layer in S.slim_layers(slim).values():
            layer.gamma.assign(np.full(width, 0.5, "float32"))
        assert S.slim_layers(slim)["bn1"].l1_scale == pytest.approx(1 / (2 * width))
        penalties.append(S.sparsity_penalty(slim))
    # λ times the mean |γ|, whatever the channel count
    np.testing.assert_allclose(penalties, [0.2 * 0.5, 0.2 * 0.5], rtol=1e-6)
    summed = S.slimmable(toy(32), l1=0.2)
    assert S.slim_layers(summed)["bn1"].l1_scale == 1.0


def test_bad_options_name_the_flag():
    with pytest.raises(ValueError, match="proximal must be True or False. Received: normalize=False, proximal='yes'"):
        S.slimmable(toy(), proximal="yes")
    with pytest.raises(ValueError, match="target must be a share"):
        S.GrowingL1(1e-4, target=1.5)


def _growing(model, **kwargs):
    cb = S.GrowingL1(1e-3, target=0.5, factor=10.0, threshold=1e-2, **kwargs)
    cb.set_model(model)
    cb.on_train_begin()
    return cb


def test_growing_l1_grows_until_the_target_share_then_holds():
    slim = S.slimmable(toy(), l1=0.0)
    cb = _growing(slim)
    logs = {}
    cb.on_epoch_end(0, logs)  # no γ near zero: λ grows
    assert cb.current == pytest.approx(1e-2) and not cb.reached
    assert logs["l1"] == pytest.approx(1e-2) and logs["gamma_sparsity"] == 0.0
    assert S.slim_layers(slim)["bn1"].l1 == pytest.approx(1e-2)
    for layer in S.slim_layers(slim).values():  # half of every layer's γ at 0
        layer.gamma.assign(np.array([0, 0, 0, 0, 1, 1, 1, 1], "float32"))
    cb.on_epoch_end(1, {})
    cb.on_epoch_end(2, {})
    assert cb.reached and cb.share == 0.5
    assert cb.current == pytest.approx(1e-2)  # stopped growing


def test_growing_l1_warns_and_holds_when_accuracy_drops():
    cb = _growing(S.slimmable(toy(), l1=0.0), margin=0.02)
    cb.on_epoch_end(0, {"val_accuracy": 0.90})  # the start value
    cb.on_epoch_end(1, {"val_accuracy": 0.89})
    assert not cb.held and cb.current == pytest.approx(1e-1)
    with pytest.warns(UserWarning, match="val_accuracy = 0.8500 fell more than 0.02"):
        cb.on_epoch_end(2, {"val_accuracy": 0.85})
    cb.on_epoch_end(3, {"val_accuracy": 0.85})
    assert cb.held and cb.current == pytest.approx(1.0)  # no growth after the warning


@pytest.mark.filterwarnings("ignore:GrowingL1")
def test_network_slimming_with_proximal_growing_l1_and_calibration():
    from keras_slim.slimming.pipeline import default_compile, network_slimming

    data = __import__("tensorflow").data.Dataset.from_tensor_slices((X, Y)).batch(16)
    result = network_slimming(toy(), data, 2, 1, 0.25, l1=0.3, proximal=True, grow_l1=True,
                              calibration_data=X[:16], compile_fn=default_compile,
                              validation_data=data, verbose=0, round_to=1)
    sparsity = dict(result.histories)["sparsity"]
    assert sparsity["l1"][0] == pytest.approx(0.6)  # grew once after epoch 1 (0.3 → 0.6)
    assert result.report["params_after"] < result.report["params_before"]
    assert set(result.after_rebuild[0]) == {"compensated", "uncompensated"}
