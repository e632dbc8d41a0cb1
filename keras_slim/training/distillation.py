"""Distillation: a student (the pruned model fine-tuning, or the model whose channels fade
to γ = β = 0) learns from the labels and from the unpruned or sparsity-trained model
(teacher) at once (Hinton et al., 2015).

    trainer = distiller(student, teacher, temperature=4.0, alpha=0.5)
    compile_fn(trainer)               # optimizer, the labels' loss, metrics as usual
    trainer.fit(train, epochs=3)      # trains `student` in place; the teacher stays frozen

loss = (1 - alpha) · labels' loss + alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)).
Both models output logits. Keras 3 uses its own `keras.distillation.Distiller` with
`LogitsDistillation`; tf_keras has no such class, so `_LegacyDistiller` (a Model with a
train_step) computes the same loss. Both add the student's own losses (regularizers);
sample weights weight the labels' term on tf_keras only (Keras 3's Distiller ignores
them). This module is the only one that knows the two apart.
"""
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import keras

__all__ = ["distiller", "student_of", "teacher_term", "frozen_copy", "DEFAULT_TEMPERATURE",
           "DEFAULT_ALPHA"]

DEFAULT_TEMPERATURE = 4.0
DEFAULT_ALPHA = 0.5


def _check(temperature, alpha):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or temperature <= 0:
        raise ValueError(f"temperature must be a positive number. Received: {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha (the teacher term's weight) must be in [0, 1]. "
                         f"Received: {alpha!r}")


def teacher_term(teacher_logits, student_logits, temperature=DEFAULT_TEMPERATURE):
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch: the loss
    the distiller adds with weight alpha."""
    if compat.KERAS3:
        return _logits_distillation(temperature).compute_loss(teacher_logits,
                                                              student_logits)
    t = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    s = tf.nn.softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    # reduction "none" + mean: tf_keras refuses the default reduction inside a
    # tf.distribute train_step.
    kl = keras.losses.KLDivergence(reduction="none")(t, s)
    return tf.reduce_mean(kl) * temperature ** 2


def _logits_distillation(temperature):
    # A KLDivergence instance, not the default "kl_divergence" string: Keras 3.15 turns
    # the string into a plain function, misses its softmax branch, and takes the KL of
    # the clipped logits instead of the softened probabilities.
    return keras.distillation.LogitsDistillation(temperature,
                                                 loss=keras.losses.KLDivergence())


def frozen_copy(model):
    """A copy of `model` with the same weights, for use as a teacher: the distiller freezes
    its teacher, and the user's model must not change."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


def distiller(student, teacher, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA):
    """A Keras model whose fit() trains `student` (in place) against labels and `teacher`.

    Compile it like the student (optimizer, the labels' loss with from_logits=True,
    metrics). `teacher` is frozen (trainable=False); pass frozen_copy(model) to keep a
    model you still train elsewhere. alpha = 0 is plain fine-tuning, alpha = 1 learns
    from the teacher only.
    """
    compat.ensure_model(student, "student")
    compat.ensure_model(teacher, "teacher")
    _check(temperature, alpha)
    if tuple(student.output_shape) != tuple(teacher.output_shape):
        raise ValueError(f"student {student.name!r} outputs shape {student.output_shape}, "
                         f"teacher {teacher.name!r} {teacher.output_shape}: distillation "
                         f"needs the same classes.")
    if compat.KERAS3:
        trainer = _Distiller(
            teacher=teacher, student=student,
            distillation_losses=_logits_distillation(temperature),
            student_loss_weight=1.0 - float(alpha))
    else:
        trainer = _LegacyDistiller(student, teacher, temperature, alpha)
    shape = tuple(student.input_shape)
    if None not in shape[1:]:
        # Built now, so checkpoint callbacks (BackupAndRestore) accept it.
        trainer(tf.zeros((1,) + shape[1:], student.inputs[0].dtype))
    return trainer


def student_of(model):
    """The model a distiller trains, else `model`: a callback of a fit on a distiller
    (GammaFade, the λ callbacks) acts on the student's layers, not the teacher's."""
    return model.student if isinstance(model, _DISTILLERS) else model


if compat.KERAS3:
    class _Distiller(keras.distillation.Distiller):
        """Keras 3's Distiller plus the student's own losses (kernel regularizers,
        add_loss), which its compute_loss leaves out and a plain fit would train with."""

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training)
            if self.student.losses:
                loss = loss + keras.ops.sum(keras.ops.stack(self.student.losses))
            return loss


class _LegacyDistiller(keras.Model):
    """tf_keras's counterpart of keras.distillation.Distiller (logits distillation)."""

    def __init__(self, student, teacher, temperature, alpha, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    @property
    def metrics(self):
        return super().metrics + [self.distillation_loss_tracker]

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _loss(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher_logits = self.teacher(x, training=False)
        logits = self(x, training=training)
        distill = teacher_term(teacher_logits, logits, self.temperature)
        # The labels' loss weighted 1 - alpha through its sample weights and the teacher
        # term added as an extra loss, so the "loss" compiled_loss tracks is the total.
        weights = tf.ones(tf.shape(logits)[:-1]) if sample_weight is None else sample_weight
        loss = self.compiled_loss(
            y, logits, (1.0 - self.alpha) * weights,
            regularization_losses=self.student.losses + [self.alpha * distill])
        self.compiled_metrics.update_state(y, logits, sample_weight)
        self.distillation_loss_tracker.update_state(distill)
        return loss

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self._loss(data, training=True)
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        # The same loss as training, as Keras 3's Distiller reports it (val_loss alike).
        self._loss(data, training=False)
        return {m.name: m.result() for m in self.metrics}


_DISTILLERS = (keras.distillation.Distiller, _LegacyDistiller) if compat.KERAS3 \
    else (_LegacyDistiller,)
