"""Every reference model and four keras.applications nets rebuild at 30% and 60% of
channels removed, equal to the masked model, and the result trains, saves and converts."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.zoo import models
from keras_slim.compat import keras
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.plan import l1_norm_plan
from keras_slim.core.rebuild import mask, rebuild

from graphgen import randomize_bn as _randomize_bn

APPLICATIONS = {"ResNet50": (32, 32, 3), "MobileNetV2": (32, 32, 3),
                "DenseNet121": (32, 32, 3), "Xception": (71, 71, 3)}


def _check(model, ratio, data_shape):
    before = [w.copy() for w in model.get_weights()]
    plan = l1_norm_plan(model, ratio)
    rebuilt = rebuild(model, plan)
    x = np.random.default_rng(1).normal(size=(2,) + data_shape).astype("float32")
    assert check_equivalence(mask(model, plan), rebuilt, data=x)["max_abs"] <= 1e-4
    assert rebuilt.count_params() < model.count_params()
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    return rebuilt, x


@pytest.mark.parametrize("ratio", [0.3, 0.6])
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_reference_model_rebuilds(name, ratio):
    model = _randomize_bn(models.build(name, input_shape=(16, 16, 3), num_classes=10))
    _check(model, ratio, (16, 16, 3))


@pytest.mark.parametrize("ratio", [0.3, 0.6])
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_application_rebuilds(name, ratio):
    shape = APPLICATIONS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=shape, classes=10)
    _check(_randomize_bn(model), ratio, shape)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "densenet40_bc", "vgg_small"])
def test_rebuilt_model_trains_saves_reloads_and_converts(name, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = _randomize_bn(models.build(name, input_shape=(16, 16, 3), num_classes=10))
    rebuilt, x = _check(model, 0.6, (16, 16, 3))
    rebuilt.compile(optimizer="sgd",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rebuilt.fit(x, np.array([1, 2]), epochs=1, verbose=0)
    rebuilt.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    expected = rebuilt.predict(x, verbose=0)
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, atol=1e-5)
    assert len(ChannelGraph(again).groups) == len(ChannelGraph(rebuilt).groups)

    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(rebuilt).convert()
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, expected, atol=1e-4)
