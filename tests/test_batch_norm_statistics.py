"""recalibrate_batch_norm: BN moving statistics set to the average of the batches'
statistics, nothing else changed. Both flavours."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import BN_MOVING_VARIANCE_BESSEL, keras
from keras_slim.core.batch_norm_statistics import recalibrate_batch_norm

RNG = np.random.default_rng(0)
X = (RNG.normal(size=(48, 5, 5, 3)) * 3 + 2).astype("float32")
Y = RNG.integers(0, 4, size=(48,))


def net():
    """conv → BN → ReLU → a nested (conv → BN) → frozen BN → head; same weights each call."""
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((5, 5, 6))
    inner_out = keras.layers.BatchNormalization(name="bn_inner")(
        keras.layers.Conv2D(4, 1, name="conv_inner")(inner_in))
    inner = keras.Model(inner_in, inner_out, name="inner")
    x = keras.Input((5, 5, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", name="conv")(x)
    h = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="bn")(h))
    h = inner(h)
    frozen = keras.layers.BatchNormalization(name="bn_frozen")
    h = frozen(h)
    frozen.trainable = False
    h = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(x, h, name="recal_net")
    for layer in (model.get_layer("bn"), inner.get_layer("bn_inner"), frozen):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 7.0, "float32"))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 9.0, "float32"))
    return model


def expected_statistics(batches, tensor_of):
    """Average over batches of the per-batch channel mean and variance of a tensor."""
    means, variances = [], []
    for x in batches:
        t = np.asarray(tensor_of(x), np.float64).reshape(-1, tensor_of.channels)
        n = t.shape[0]
        variance = t.var(axis=0) * (n / (n - 1) if BN_MOVING_VARIANCE_BESSEL else 1.0)
        means.append(t.mean(axis=0))
        variances.append(variance)
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def _probe(model, path_out, channels):
    sub = keras.Model(model.input, path_out)

    def tensor_of(x):
        return sub(x, training=True)
    tensor_of.channels = channels
    return tensor_of


def test_moving_statistics_become_the_batch_average_and_nothing_else_changes():
    model = net()
    before = {w.path if hasattr(w, "path") else w.name: np.array(w)
              for w in model.weights}
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    used = recalibrate_batch_norm(model, dataset, steps=2)
    assert used == 2
    batches = [X[:16], X[16:32]]
    bn = model.get_layer("bn")
    mean, variance = expected_statistics(batches, _probe(model, model.get_layer("conv").output, 6))
    np.testing.assert_allclose(np.array(bn.moving_mean), mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.array(bn.moving_variance), variance, rtol=1e-4, atol=1e-4)
    assert bn.momentum == 0.99  # restored
    inner_bn = model.get_layer("inner").get_layer("bn_inner")
    assert not np.allclose(np.array(inner_bn.moving_mean), 7.0)  # nested model reached
    frozen = model.get_layer("bn_frozen")
    np.testing.assert_array_equal(np.array(frozen.moving_mean), 7.0)  # frozen: untouched
    changed = {k for k, w in ((w.path if hasattr(w, "path") else w.name, w)
                              for w in model.weights)
               if not np.array_equal(before[k], np.array(w))}
    assert changed and all("moving" in k for k in changed), changed


def test_arrays_are_cut_into_batches_weighted_by_size_and_steps_limit_them():
    model = net()
    # 48 examples in batches of 20: 20 + 20 + 8, the last weighted 8/48.
    assert recalibrate_batch_norm(model, (X, Y), steps=10, batch_size=20) == 3
    rows = np.arange(48)  # every example is used; the order does not change the mean
    probe = _probe(model, model.get_layer("conv").output, 6)
    total = np.asarray(probe(X[rows]), np.float64).reshape(-1, 6).mean(axis=0)
    np.testing.assert_allclose(np.array(model.get_layer("bn").moving_mean), total,
                               rtol=1e-4, atol=1e-4)
    assert recalibrate_batch_norm(net(), X, steps=1, batch_size=8) == 1
    assert recalibrate_batch_norm(net(), (X, Y, np.ones(48)), steps=2, batch_size=8) == 2


def test_multi_input_models_take_dicts_and_tuples_of_arrays():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((5, 5, 3), name="a"), keras.Input((5, 5, 3), name="b")
    h = keras.layers.Add()([keras.layers.Conv2D(4, 1, name="ca")(a),
                            keras.layers.Conv2D(4, 1, name="cb")(b)])
    model = keras.Model([a, b], keras.layers.BatchNormalization(name="bn")(h))
    bn = model.get_layer("bn")
    for data in (({"a": X, "b": 2 * X}, Y), ((X, 2 * X), Y),
                 tf.data.Dataset.from_tensor_slices(((X, 2 * X), Y)).batch(16)):
        bn.moving_mean.assign(np.zeros(4, "float32"))
        assert recalibrate_batch_norm(model, data, steps=3, batch_size=16) == 3
        expected = np.asarray(keras.Model([a, b], h)([X, 2 * X]), np.float64)
        np.testing.assert_allclose(np.array(bn.moving_mean),
                                   expected.reshape(-1, 4).mean(axis=0), rtol=1e-4, atol=1e-4)


def test_statistics_are_restored_when_a_pass_fails():
    model = net()
    bn = model.get_layer("bn")

    def batches():
        yield X[:16]
        raise RuntimeError("broken input pipeline")
    with pytest.raises(RuntimeError, match="broken input pipeline"):
        recalibrate_batch_norm(model, batches(), steps=3)
    np.testing.assert_array_equal(np.array(bn.moving_mean), 7.0)
    assert bn.momentum == 0.99


def test_bad_arguments_give_one_clear_error():
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        recalibrate_batch_norm(net(), X, steps=0)
    with pytest.raises(ValueError, match="data gave no batch"):
        recalibrate_batch_norm(net(), X[:0])
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert recalibrate_batch_norm(plain, np.zeros((4, 3), "float32")) == 0


def test_generators_and_keras_sequences_give_their_first_batches():
    by_dataset = net()
    recalibrate_batch_norm(by_dataset, tf.data.Dataset.from_tensor_slices(X).batch(16), 2)

    class Batches(keras.utils.Sequence if hasattr(keras.utils, "Sequence")
                  else keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return X[16 * i:16 * (i + 1)], Y[16 * i:16 * (i + 1)]

    for data in (Batches(), ((X[i:i + 16], Y[i:i + 16]) for i in (0, 16, 32)),
                 ([X[i:i + 16], Y[i:i + 16]] for i in (0, 16, 32))):
        model = net()
        assert recalibrate_batch_norm(model, data, steps=2) == 2
        np.testing.assert_allclose(np.array(model.get_layer("bn").moving_mean),
                                   np.array(by_dataset.get_layer("bn").moving_mean),
                                   rtol=1e-5, atol=1e-5)
