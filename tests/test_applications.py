"""Every model constructor in keras.applications of the installed Keras prunes: a random
40% plan rebuilds equal to the masked model (randomised BN statistics), leaves the input
model unchanged, has fewer parameters and converts to int8 TFLite with builtin ops only.
The phone-sized ones run by default; the rest are `slow`."""
import inspect

import numpy as np
import pytest

from keras_slim.compat import keras
from keras_slim.core.criteria import criterion_plan
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import mask, rebuild
from keras_slim.export import convert
from graphgen import randomize_bn

# Every public constructor: a capitalised callable of keras.applications that builds a model.
CONSTRUCTORS = sorted(name for name, fn in vars(keras.applications).items()
                      if name[:1].isupper() and inspect.isfunction(fn))
FAST = {"MobileNetV3Small", "MobileNetV3Large", "ConvNeXtTiny", "EfficientNetB0"}
SIZES = (32, 75)  # the smallest legal square input: 32, or 75 for the Inception family


def _build(name):
    error = None
    for size in SIZES:
        try:
            return getattr(keras.applications, name)(
                weights=None, input_shape=(size, size, 3), classes=10), size
        except ValueError as e:  # "input size must be at least …"
            error = e
    raise error


def test_the_fast_set_is_in_the_enumeration():
    assert FAST <= set(CONSTRUCTORS) and len(CONSTRUCTORS) >= 30, CONSTRUCTORS


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CONSTRUCTORS])
def test_keras_application_prunes_and_converts(name):
    model, size = _build(name)
    randomize_bn(model)
    before = [w.copy() for w in model.get_weights()]
    graph = ChannelGraph(model)
    plan = criterion_plan(graph, "random", 0.4)
    rebuilt = rebuild(model, plan, graph=graph)
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype("float32")
    assert check_equivalence(mask(model, plan, graph=graph), rebuilt, data=x)["max_abs"] <= 1e-4
    assert check_equivalence(model, rebuilt, data=x)["max_abs"] > 0  # channels did go
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    assert rebuilt.count_params() < model.count_params()
    flatbuffer = convert(rebuilt, "int8", representative_data=x)  # builtin ops or raises
    assert len(flatbuffer) > 1000
