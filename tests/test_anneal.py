"""Fine-tuning cosine-decays a constant learning rate (keras_slim.training.anneal), with
and without a distillation teacher; schedules, datasets of unknown length and fits with a
learning-rate callback keep their own rate."""
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras, last_learning_rate
from keras_slim.slimming.pipeline import default_compile, finetune
from keras_slim.training import distillation


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(16)(inputs)))


def _data(n=40, batch=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 3, n))).batch(batch)


class _RecordRate(keras.callbacks.Callback):
    """The learning rate each step ran with (the trainer's: a distiller's with a teacher)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(last_learning_rate(self.model.optimizer)))


@pytest.mark.parametrize("with_teacher", [False, True])
def test_finetune_anneals_a_constant_rate_to_zero_over_its_steps(with_teacher):
    record = _RecordRate()
    teacher = distillation.frozen_copy(_mlp(1)) if with_teacher else None
    model, _ = finetune(_mlp(), _data(), 2, lambda m: default_compile(m, 0.1),
                        callbacks=[record], verbose=0, teacher=teacher)
    total = 2 * 5
    expected = [0.05 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(record.rates, expected, rtol=1e-5, atol=1e-7)


def test_the_steps_apply_the_decayed_rate_and_the_model_trains_on_after():
    # one weight, plain SGD, d|w + 100|/dw = 1: each step moves w by exactly -rate
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False,
                                                   kernel_initializer="zeros")(inputs))
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((40, 1), "float32"), np.full((40, 1), -100.0, "float32"))).batch(8)

    def compile_fn(m):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mae")

    weights = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: weights.append(
            float(model.get_weights()[0][0, 0])))
    finetune(model, data, 2, compile_fn, callbacks=[record], verbose=0)
    rates = [0.05 * (1 + math.cos(math.pi * t / 10)) for t in range(10)]
    np.testing.assert_allclose(weights, -np.cumsum(rates), rtol=1e-5)
    # the returned model is compiled afresh: further training runs at 0.1 again
    model.fit(data.take(1), epochs=1, verbose=0)
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(weights[-1] - 0.1, rel=1e-5)


@pytest.mark.parametrize("how", ["anneal=False", "rate callback"])
def test_finetune_keeps_the_rate_when_told_or_when_a_callback_sets_it(how):
    record = _RecordRate()
    callbacks = [record]
    if how == "rate callback":
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate))
    finetune(_mlp(), _data(), 1, lambda m: default_compile(m, 0.1), callbacks=callbacks,
             verbose=0, anneal=how != "anneal=False")
    np.testing.assert_allclose(record.rates, [0.1] * 5, rtol=1e-6)


def test_a_schedule_and_an_unknown_length_are_left_alone():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    model, _ = finetune(_mlp(), _data(), 1, lambda m: default_compile(m, schedule),
                        verbose=0)
    assert model.optimizer._learning_rate is schedule
    assert int(model.optimizer.iterations) == 5

    record = _RecordRate()
    unknown = _data().filter(lambda x, y: True)  # cardinality unknown to Keras
    assert int(unknown.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
    finetune(_mlp(), unknown, 1, lambda m: default_compile(m, 0.1), callbacks=[record],
             verbose=0)
    np.testing.assert_allclose(record.rates, [0.1] * 5, rtol=1e-6)
