"""Models from where users keep them: keras.applications networks with ImageNet or own
weights, user model files with custom objects, and a new classifier head for another
class count.

    model = application("MobileNetV2", (160, 160, 3), num_classes=5, weights="imagenet")
    model = replace_head(load_model("mine.keras"), num_classes=5)
"""
import importlib
import inspect
import os

from keras_slim import compat
from keras_slim.compat import keras

__all__ = ["APPLICATION_PREFIX", "application", "application_names", "custom_objects_from",
           "replace_head", "WeightsUnavailableError"]

APPLICATION_PREFIX = "keras.applications."


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither cached nor downloadable."""


def application_names():
    """Model constructors keras.applications offers (MobileNetV2, ResNet50, ...)."""
    return sorted(n for n, f in vars(keras.applications).items()
                  if inspect.isfunction(f) and n[:1].isupper())


def application(name, input_shape, num_classes, weights="imagenet"):
    """keras.applications.`name` with logits out for `num_classes` classes.

    weights: "imagenet" (downloaded once into ~/.keras/models; the ImageNet classifier is
    replaced by a new head when num_classes != 1000), None / "none" (random), or the
    path of a weights file (.weights.h5 / .h5) of the same architecture and classes.
    """
    name = name[len(APPLICATION_PREFIX):] if name.startswith(APPLICATION_PREFIX) else name
    constructor = getattr(keras.applications, name, None)
    if name not in application_names():
        raise ValueError(f"keras.applications has no model {name!r}. Known: "
                         f"{', '.join(application_names())}.")
    path = None
    if weights not in (None, "none", "imagenet"):
        path, weights = os.fspath(weights), None
        if not os.path.isfile(path):
            raise ValueError(f"weights file {path!r} does not exist.")
    if weights == "none":
        weights = None
    imagenet_head = weights == "imagenet" and num_classes == 1000
    try:
        model = constructor(input_shape=tuple(input_shape), weights=weights,
                            include_top=weights is None or imagenet_head,
                            classes=num_classes if weights is None else 1000,
                            classifier_activation=None,
                            **({} if weights is None or imagenet_head else {"pooling": "avg"}))
    except Exception as e:  # noqa: BLE001 - urllib/HTTP errors differ between versions
        if weights == "imagenet" and _is_download_error(e):
            raise WeightsUnavailableError(
                f"the ImageNet weights of {name} are not in ~/.keras/models and cannot be "
                f"downloaded ({type(e).__name__}: {e}). Run once with network access, or "
                f"pass a weights file (weights=PATH) or weights=None.") from None
        raise
    if weights == "imagenet" and not imagenet_head:
        head = keras.layers.Dense(num_classes, name="head")(model.output)
        model = keras.Model(model.input, head, name=model.name)
    if path is not None:
        try:
            model.load_weights(path)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"cannot load weights file {path!r} into {name} "
                             f"({num_classes} classes): {e}") from None
    return model


def _is_download_error(error):
    import urllib.error

    seen = error
    while seen is not None:
        if isinstance(seen, (urllib.error.URLError, OSError, ConnectionError)) or \
                "URL fetch failure" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def custom_objects_from(module_name):
    """{name: object} a model file may reference, from a user module: its `custom_objects`
    dict if it defines one, else its public classes and functions."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import custom objects module {module_name!r}: {e}") \
            from None
    declared = getattr(module, "custom_objects", None)
    if isinstance(declared, dict):
        return dict(declared)
    return {n: o for n, o in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))}


def replace_head(model, num_classes, name="head"):
    """A new model: `model` up to the input of its last weighted layer (its classifier),
    then a new Dense(num_classes) with logits out. Layers without weights after the
    classifier (softmax, dropout) go with it; the user's model is not changed."""
    compat.ensure_model(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2. Received: {num_classes!r}")
    copy = keras.models.clone_model(model)   # training the new model must not touch `model`
    copy.set_weights(model.get_weights())
    model = copy
    layer = model.layers[-1]
    while not layer.weights:
        inbound = _inbound_layer(layer)
        if inbound is None:
            raise ValueError(f"model {model.name!r} has no classifier layer with weights "
                             f"to replace.")
        layer = inbound
    features = layer.input
    if isinstance(features, (list, tuple)):
        raise ValueError(f"the classifier {layer.name!r} of {model.name!r} takes several "
                         f"inputs; replace_head needs one feature tensor.")
    outputs = keras.layers.Dense(num_classes, name=name)(features)
    return keras.Model(model.inputs, outputs, name=model.name)


def _inbound_layer(layer):
    tensor = layer.input
    if isinstance(tensor, (list, tuple)):
        return None
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None
