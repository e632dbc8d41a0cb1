"""A subclass of Model built from inputs and outputs whose get_config returns its
constructor arguments (keras-hub's backbones are made this way) prunes like a plain
functional model, alone or nested; the rebuilt model is a plain functional one."""
import numpy as np
import pytest

from keras_slim import slimming
from keras_slim.compat import keras
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import random_plan
from keras_slim.core.rebuild import mask, rebuild
from keras_slim.dce.gates import gate_model, gates_of, strip_gates
from graphgen import randomize_weights

L = keras.layers


class Backbone(keras.Model):
    """Residual convs; its config is {"width": ...}, as keras-hub's backbones do."""

    def __init__(self, width=8, **kwargs):
        inputs = keras.Input((8, 8, 3))
        x = L.ReLU()(L.BatchNormalization(name="bn1")(
            L.Conv2D(width, 3, padding="same", name="conv1")(inputs)))
        y = L.BatchNormalization(name="bn2")(L.Conv2D(width, 3, padding="same",
                                                      name="conv2")(x))
        x = L.Add(name="add")([x, y])
        outputs = L.Conv2D(2 * width, 1, name="proj")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name, "trainable": self.trainable}


def _alone():
    model = Backbone(name="backbone")
    randomize_weights(model, 0)
    return model


def _nested():
    inputs = keras.Input((8, 8, 3))
    features = Backbone(name="backbone")(inputs)
    outputs = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs, name="classifier")
    randomize_weights(model, 0)
    return model


def _x():
    return np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("build", [_alone, _nested])
def test_a_functional_subclass_rebuilds_like_mask_as_a_plain_model(build, tmp_path):
    model = build()
    before = [w.copy() for w in model.get_weights()]
    graph = ChannelGraph(model)
    assert graph.group_of("backbone/conv1" if build is _nested else "conv1").prunable.all()
    plan = random_plan(graph, 0.5, round_to=1)
    rebuilt = rebuild(model, plan, graph=graph)
    assert check_equivalence(mask(model, plan, graph=graph), rebuilt,
                             data=_x())["max_abs"] <= 1e-5
    assert rebuilt.count_params() < model.count_params()
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    assert not any(isinstance(m, Backbone) for m in [rebuilt] + rebuilt.layers)
    rebuilt.save(tmp_path / "m.keras")  # plain layers only: reloads without the class
    again = keras.models.load_model(tmp_path / "m.keras")
    assert check_equivalence(rebuilt, again, data=_x())["max_abs"] == 0.0


def test_a_nested_functional_subclass_gates_and_slims():
    model = _nested()
    gated = gate_model(model, 0.5)
    assert {g.group for g in gates_of(gated)} >= {"backbone/conv1"}
    plain = strip_gates(gated)
    assert check_equivalence(model, plain, data=_x())["max_abs"] <= 1e-5
    slim = slimming.slimmable(model, l1=1e-3)
    assert len(slimming.slim_layers(slim)) == 2
    assert check_equivalence(model, slimming.strip(slim), data=_x())["max_abs"] <= 1e-5
