"""Loading saved models that hold keras-slim's layers, in either Keras flavour."""
import os

from keras_slim import compat


def keras_slim_objects():
    """{name: class} of every layer keras-slim defines (all registered as serializable);
    importing their modules registers them."""
    from keras_slim.dce.compact import (ChannelExpand, GatedBatchNormalization,
                                        GatedChannelZeroPad, GatedConv2D,
                                        GatedDepthwiseConv2D)
    from keras_slim.dce.gates import ChannelGate
    from keras_slim.slimming.layer import SlimBatchNormalization
    from keras_slim.zoo.layers import ChannelZeroPad

    return {cls.__name__: cls for cls in (
        SlimBatchNormalization, ChannelGate, GatedConv2D, GatedBatchNormalization,
        GatedDepthwiseConv2D, GatedChannelZeroPad, ChannelExpand, ChannelZeroPad)}


def load_model(path, custom_objects=None, compile=True):
    """keras.models.load_model with every keras-slim layer known, plus the user's own
    `custom_objects`. Raises ValueError naming `path` if it cannot be read."""
    if not os.path.exists(path):
        raise ValueError(f"model file {path!r} does not exist.")
    if os.path.isdir(path) and compat.KERAS3:
        raise ValueError(f"{path!r} is a SavedModel directory: Keras 3 cannot rebuild its "
                         f"layers (needed to prune it). Save the model as .keras where it "
                         f"was built, or run with TF_USE_LEGACY_KERAS=1 for a tf_keras "
                         f"SavedModel.")
    objects = dict(keras_slim_objects(), **(custom_objects or {}))
    try:
        return compat.keras.models.load_model(path, custom_objects=objects, compile=compile)
    except Exception as e:  # Keras says many things here; the user needs the file named
        raise ValueError(f"cannot load a Keras model from {path!r}: {e}") from e
