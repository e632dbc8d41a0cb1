"""Fine-tuning cosine-anneals a constant learning rate (keras_slim.training.anneal), with
and without a distillation teacher; schedules and datasets of unknown length are left
alone."""
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
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
    """The learning rate each step ran with."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))


@pytest.mark.parametrize("with_teacher", [False, True])
def test_finetune_anneals_a_constant_rate_to_zero_over_its_steps(with_teacher):
    record = _RecordRate()
    teacher = distillation.frozen_copy(_mlp(1)) if with_teacher else None
    model, _ = finetune(_mlp(), _data(), 2, lambda m: default_compile(m, 0.1),
                        callbacks=[record], verbose=0, teacher=teacher)
    total = 2 * 5
    expected = [0.05 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(record.rates, expected, rtol=1e-5)
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.1)


def test_finetune_without_anneal_keeps_the_rate():
    record = _RecordRate()
    finetune(_mlp(), _data(), 1, lambda m: default_compile(m, 0.1), callbacks=[record],
             verbose=0, anneal=False)
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
