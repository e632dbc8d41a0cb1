"""SlimBatchNormalization: a BatchNormalization whose γ carries an L1 penalty."""
import math

import numpy as np
import tensorflow as tf

from keras_slim.compat import keras, register_serializable
from keras_slim.core.walk import iter_layers

_L1_WEIGHT = "l1_lambda"


def _check_l1(value, where="l1"):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a float >= 0, got {value!r}.") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{where} must be a finite float >= 0, got {value!r}.")
    return value


@register_serializable()
class SlimBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization whose scale γ carries an L1 penalty `l1`·`l1_scale`·Σ|γ|.

    Works on any rank (after Conv: per filter; after Dense: per neuron). `l1` is held
    in a non-trainable scalar weight named "l1_lambda", created after (so listed after)
    the four BN weights; `bn_weights(layer)` gives the plain-BN part. `l1_scale` is a
    fixed factor (slimmable(normalize=True) sets 1 / number of γ in the model, so the
    summed penalty does not grow with the channel count).

    proximal=True: the penalty is not added to the loss; the `ProximalL1` callback
    applies it after each optimizer step as a soft-threshold of γ (exact zeros).
    """

    def __init__(self, l1=1e-4, l1_scale=1.0, proximal=False, **kwargs):
        super().__init__(**kwargs)
        where = f"layer {kwargs.get('name', '')!r}"
        self._initial_l1 = _check_l1(l1, f"l1 of {where}")
        self.l1_scale = _check_l1(l1_scale, f"l1_scale of {where}")
        if not isinstance(proximal, bool):
            raise ValueError(f"proximal of {where} must be True or False. "
                             f"Received: {proximal!r}")
        self.proximal = proximal
        self._l1_var = None

    def build(self, input_shape):
        super().build(input_shape)
        self._l1_var = self.add_weight(
            name=_L1_WEIGHT, shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self._initial_l1))

    @property
    def l1(self):
        return float(np.asarray(self._l1_var)) if self._l1_var is not None \
            else self._initial_l1

    @l1.setter
    def l1(self, value):
        value = _check_l1(value, f"l1 of layer {self.name!r}")
        self._initial_l1 = value
        if self._l1_var is not None:
            self._l1_var.assign(value)

    def effective_l1(self):
        """λ·l1_scale as a tensor: the weight of Σ|γ| (and the proximal threshold / lr)."""
        # float32 even when a mixed precision policy autocasts variables read in call().
        return tf.cast(tf.convert_to_tensor(self._l1_var), tf.float32) * self.l1_scale

    def penalty(self):
        """λ·l1_scale·Σ|γ| as a tensor (0 without γ)."""
        if not self.scale:
            return tf.constant(0.0)
        gamma = tf.cast(tf.convert_to_tensor(self.gamma), tf.float32)
        return self.effective_l1() * tf.reduce_sum(tf.abs(gamma))

    def call(self, inputs, training=None, **kwargs):
        outputs = super().call(inputs, training=training, **kwargs)
        if self.scale and not self.proximal:
            self.add_loss(self.penalty())
        return outputs

    def get_config(self):
        config = super().get_config()
        config["l1"] = self.l1  # the current λ, so a reload resumes the schedule
        config["l1_scale"] = self.l1_scale
        config["proximal"] = self.proximal
        return config


def is_bn(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_slim(layer):
    return isinstance(layer, SlimBatchNormalization)


def bn_weights(layer):
    """The weights a plain BatchNormalization would have (γ, β, mean, var as present)."""
    lam = getattr(layer, "_l1_var", None)
    return [w for w in layer.weights if w is not lam]



def slim_layers(model):
    """{path: SlimBatchNormalization} of a model."""
    return {p: l for p, l in iter_layers(model) if _is_slim(l)}


