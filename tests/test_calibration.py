"""Data-aware compensation: rebuild / mask with calibration_data replace removed channels
by their calibration mean. Both flavours."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim.core.plan import plan_from_scores, random_plan
from keras_slim.core.rebuild import mask, rebuild

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 6, 6, 3)).astype("float32")
REMOVED = [0, 2]  # channels of "c1" made constant


def net(consumer):
    """c1 (4 channels; 0 and 2 constant for any input) → BN → ReLU → the consumer."""
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    if consumer == "dense":
        h = keras.layers.Flatten(name="flat")(h)
        h = keras.layers.Dense(5, name="use")(h)
    elif consumer == "conv1x1":
        h = keras.layers.Conv2D(5, 1, name="use")(h)
    else:  # "valid" / "same": a 3×3 conv
        h = keras.layers.Conv2D(5, 3, padding=consumer, name="use")(h)
    model = keras.Model(x, h, name=f"net_{consumer}")
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") if i < 2 or i > 5
                       else (rng.random(w.shape) + 0.5).astype("float32")
                       for i, w in enumerate(model.get_weights())])
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., REMOVED] = 0.0          # constant channels: the bias only
    bias[REMOVED] = [1.5, 0.7]
    model.get_layer("c1").set_weights([kernel, bias])
    return model


def plan_removing(model, channels):
    scores = np.ones(4)
    scores[channels] = 0.0
    return plan_from_scores(model, {"c1": scores}, len(channels) / 4, round_to=1)


@pytest.mark.parametrize("consumer", ["dense", "conv1x1", "valid"])
def test_mean_replacement_exact_for_constant_channels(consumer):
    model = net(consumer)
    plan = plan_removing(model, REMOVED)
    small, report = rebuild(model, plan, calibration_data=X[:16], return_report=True)
    assert small.get_layer("c1").filters == 2
    assert [(c.layer, c.channels, c.exact) for c in report.compensations] == \
        [("use", 2 * (36 if consumer == "dense" else 1), True)]
    assert report.deviation()["max_abs"] < 1e-6
    want = model(X[16:], training=False)
    np.testing.assert_allclose(small(X[16:], training=False), want, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(mask(model, plan, calibration_data=X[:16])(
        X[16:], training=False), want, rtol=1e-6, atol=1e-5)
    # without data the same channels are not known to be constant (γ ≠ 0): not folded
    assert not rebuild(model, plan, return_report=True)[1].compensations


def test_same_padding_consumer_reported_approximate():
    model = net("same")
    plan = plan_removing(model, REMOVED)
    data = tf.data.Dataset.from_tensor_slices((X[:16], np.zeros(16))).batch(8)
    small, report = rebuild(model, plan, calibration_data=data, return_report=True)
    (comp,) = report.compensations
    assert comp.layer == "use" and not comp.exact and not report.exact
    diff = np.abs(np.asarray(small(X[16:], training=False))
                  - np.asarray(model(X[16:], training=False)))
    assert diff[:, 1:-1, 1:-1].max() < 1e-4 < 1e-2 < diff.max()  # wrong at the borders


def test_deviation_reported_and_beats_no_compensation_on_random_weights():
    x = keras.Input((8, 8, 3))
    h = x
    for i in range(3):
        h = keras.layers.Conv2D(8, 3, padding="same", name=f"c{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"r{i}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(x, keras.layers.Dense(4, name="out")(h), name="random_net")
    data = RNG.normal(size=(96, 8, 8, 3)).astype("float32")
    calib, test = data[:64], data[64:]
    plan = random_plan(model, 0.5, seed=3, round_to=1)
    calibrated, report = rebuild(model, plan, calibration_data=calib, return_report=True)
    plain = rebuild(model, plan, compensate=False)
    want = np.asarray(model(test, training=False))
    err_cal = np.abs(np.asarray(calibrated(test, training=False)) - want).mean()
    err_plain = np.abs(np.asarray(plain(test, training=False)) - want).mean()
    assert err_cal < 0.7 * err_plain, (err_cal, err_plain)
    deviation = report.deviation()
    assert deviation["mean_abs"] > 0 and deviation["max_abs"] >= deviation["mean_abs"]
    assert not report.exact  # ReLU outputs vary per example


def test_calibration_errors():
    model = net("dense")
    plan = plan_removing(model, REMOVED)
    with pytest.raises(ValueError, match="cannot be combined with compensate=False"):
        rebuild(model, plan, compensate=False, calibration_data=X)
    with pytest.raises(ValueError, match="has 1 input"):
        rebuild(model, plan, calibration_data=[X, X])
