"""Distillation fine-tuning (keras_slim.training.distillation), in the Keras flavour the
process runs on: the teacher term is wired (it has a gradient) and it goes down."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim.training import distillation


def _task(seed=0, n=256):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 0.8)
    return x, y


def _mlp(width, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(width, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def _compile(model, lr=0.05):
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def teacher():
    x, y = _task()
    model = _compile(_mlp(32, 1))
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    return model


def test_teacher_term_has_a_gradient_through_the_student(teacher):
    x, _ = _task(1, 64)
    student = _mlp(4, 2)
    with tf.GradientTape() as tape:
        term = distillation.teacher_term(teacher(x), student(x), temperature=4.0)
    grads = tape.gradient(term, student.trainable_variables)
    assert float(term) > 0
    assert all(g is not None for g in grads)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 1e-4
    # Equal logits: nothing to learn from the teacher.
    assert float(distillation.teacher_term(teacher(x), teacher(x))) == pytest.approx(0, abs=1e-5)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_teacher_term_is_the_softened_kl_times_t_squared():
    teacher_logits = np.array([[5.0, 0.0, -5.0], [1.0, 2.0, 3.0]], "float32")
    student_logits = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    p, q = _softmax(teacher_logits / 4.0), _softmax(student_logits / 4.0)
    expected = 16.0 * float((p * np.log(p / q)).sum(-1).mean())
    got = float(distillation.teacher_term(teacher_logits, student_logits, temperature=4.0))
    assert got == pytest.approx(expected, rel=1e-4)  # not a KL of the logits themselves


def test_distiller_loss_is_the_weighted_sum_of_labels_and_teacher_terms(teacher):
    x, y = _task(2, 64)
    student = _mlp(4, 3)
    trainer = _compile(distillation.distiller(student, distillation.frozen_copy(teacher),
                                              temperature=4.0, alpha=0.3), lr=0.0)
    labels = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, student(x)))
    term = float(distillation.teacher_term(teacher(x), student(x), temperature=4.0))
    loss = trainer.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(0.7 * labels + 0.3 * term, rel=1e-4)


def _regularized_mlp(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(4, activation="relu",
                           kernel_regularizer=keras.regularizers.L2(0.5))(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def test_the_students_regularizers_count_and_the_teachers_do_not():
    x, y = _task(3, 64)
    student, teacher = _regularized_mlp(4), _regularized_mlp(5)
    trainer = _compile(distillation.distiller(student, teacher, temperature=2.0,
                                              alpha=0.5), lr=0.0)
    labels = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, student(x)))
    term = float(distillation.teacher_term(teacher(x), student(x), temperature=2.0))
    student_l2 = 0.5 * float(np.sum(student.layers[1].get_weights()[0] ** 2))
    loss = trainer.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(0.5 * labels + 0.5 * term + student_l2, rel=1e-4)


def test_per_pixel_outputs_distil():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4, 4, 3)).astype("float32")
    y = (x[..., 0] > 0).astype("int64")                        # a label per pixel

    def segmenter(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((4, 4, 3))
        return keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))

    student, teacher = segmenter(1), segmenter(2)
    trainer = _compile(distillation.distiller(student, teacher, alpha=0.25), lr=0.0)
    labels = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, student(x)))
    term = float(distillation.teacher_term(teacher(x), student(x)))
    loss = trainer.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(0.75 * labels + 0.25 * term, rel=1e-4)


def test_distillation_fine_tuning_lowers_the_teacher_term(teacher):
    x, y = _task()
    student = _mlp(4, 2)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    before = float(distillation.teacher_term(teacher(x), student(x)))
    trainer = _compile(distillation.distiller(student, distillation.frozen_copy(teacher),
                                              temperature=4.0, alpha=1.0))
    history = trainer.fit(x, y, epochs=15, batch_size=32, verbose=0).history
    after = float(distillation.teacher_term(teacher(x), student(x)))
    assert after < 0.5 * before
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    # The student is trained in place; the teacher (a frozen copy's source) is not touched.
    for w, w0 in zip(teacher.get_weights(), teacher_weights):
        np.testing.assert_array_equal(w, w0)
    assert teacher.trainable


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0), "temperature"), (dict(alpha=1.5), "alpha")])
def test_bad_settings_are_clear_errors(teacher, kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation.distiller(_mlp(4, 0), teacher, **kwargs)


def test_student_and_teacher_must_share_classes(teacher):
    inputs = keras.Input((8,))
    other = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    with pytest.raises(ValueError, match="same classes"):
        distillation.distiller(other, teacher)


def test_pipelines_take_distill_arguments():
    """network_slimming(...) and run_dce(...) fine-tune through the distiller when asked."""
    from keras_slim.dce.pipeline import run_dce
    from keras_slim.slimming.pipeline import network_slimming

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean((1, 2)) > 0).astype("int64")
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    result = network_slimming(model, ds, 1, 1, ratio=0.5, l1=1e-3, verbose=0, round_to=1,
                              distill=True, temperature=2.0, alpha=0.7)
    assert "distillation_loss" in result.histories[-1][1]
    dce = run_dce(model, ds, fraction=0.5, epochs=1, finetune_epochs=1, warmup_steps=1,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  round_to=1, distill=True)
    assert "distillation_loss" in dce.finetune_history.history
