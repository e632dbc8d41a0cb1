"""Small custom layers used by the reference models.

Kept serializable (registered, with get_config) so models holding them save to
`.keras` and reload without custom_objects. No Lambda layers: the pruning tool
cannot see inside them.
"""
import tensorflow as tf

from keras_slim.compat import keras, register_serializable


@register_serializable()
class ChannelZeroPad(keras.layers.Layer):
    """Pads the last (channel) axis with `before` zeros in front and `after` behind.

    The parameter-free "option A" shortcut of He et al. (2016) for CIFAR ResNets.
    """

    def __init__(self, before, after, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("before", before), ("after", after)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ChannelZeroPad: {arg} must be an int >= 0, got {value!r}.")
        self.before = before
        self.after = after

    def call(self, inputs):
        rank = len(inputs.shape)
        paddings = [[0, 0]] * (rank - 1) + [[self.before, self.after]]
        return tf.pad(inputs, paddings)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if shape[-1] is not None:
            shape[-1] = shape[-1] + self.before + self.after
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(before=self.before, after=self.after)
        return config
