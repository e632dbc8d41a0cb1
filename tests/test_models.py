"""Reference CNNs: published sizes, structure the pruning tool relies on, training."""
import numpy as np
import pytest

from keras_slim.zoo import models
from keras_slim.compat import count_params, keras
from keras_slim.zoo.layers import ChannelZeroPad

# Keras 3's DepthwiseConv2D is no Conv2D subclass (tf_keras' is).
CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
BN = keras.layers.BatchNormalization
# Layers a BN may sit behind in pre-activation nets: they neither mix nor scale channels.
PASS_THROUGH = (keras.layers.Add, keras.layers.Concatenate, keras.layers.AveragePooling2D,
                keras.layers.MaxPooling2D)
PRE_ACTIVATION = ("resnet164", "densenet40", "densenet40_bc")


def _graph(model):
    """(producers, consumers) of every layer, from the functional graph."""
    by_output = {id(layer.output): layer for layer in model.layers}
    producers, consumers = {}, {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            producers[layer.name] = []
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        producers[layer.name] = [by_output[id(t)] for t in inputs]
        for p in producers[layer.name]:
            consumers[p.name].append(layer)
    return producers, consumers


def _reaches_only_bn(layer, consumers, pre_activation):
    """True if every path out of `layer` meets a BN before anything that has weights.

    Pre-activation nets also feed the raw block input to shortcut convs (as the repo).
    """
    def ok(c):
        if isinstance(c, BN):
            return True
        if pre_activation and isinstance(c, CONVS) and "shortcut" in c.name:
            return True
        return isinstance(c, PASS_THROUGH) and _reaches_only_bn(c, consumers, pre_activation)

    outs = consumers[layer.name]
    return bool(outs) and all(ok(c) for c in outs)


def _check_structure(name, model, num_classes):
    assert type(model).__name__ == "Functional" and not isinstance(model, keras.Sequential)
    assert model.output_shape == (None, num_classes)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.name == "logits"
    assert last.get_config()["activation"] == "linear"

    producers, consumers = _graph(model)
    convs = [layer for layer in model.layers if isinstance(layer, CONVS)]
    assert convs
    for conv in convs:
        assert not conv.use_bias, conv.name
        assert _reaches_only_bn(conv, consumers, name in PRE_ACTIVATION), conv.name
        if name in PRE_ACTIVATION:
            if conv.name == "stem_conv" or "shortcut" in conv.name:
                continue  # fed by the input / the raw block input, as in the repo
            (relu,) = producers[conv.name]
            assert isinstance(relu, keras.layers.ReLU), conv.name
            assert isinstance(producers[relu.name][0], BN), conv.name
        else:
            assert [type(c) for c in consumers[conv.name]] == [BN], conv.name


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_every_model_builds_for_both_datasets(name):
    small = models.build(name, input_shape=(28, 28, 1), num_classes=10)
    big = models.build(name, input_shape=(32, 32, 3), num_classes=100)
    _check_structure(name, small, 10)
    _check_structure(name, big, 100)
    # Names are fixed by the builder (no session counters), so the pruning tool
    # can refer to layers across rebuilds.
    assert [layer.name for layer in small.layers] == [layer.name for layer in big.layers]
    assert small.name == name


@pytest.mark.parametrize("name, millions, digits", [
    ("vgg19", 20.04, 2),
    ("resnet20", 0.27, 2),
    ("resnet56", 0.85, 2),
    ("resnet164", 1.70, 2),
    ("densenet40", 1.0, 1),
])
def test_published_parameter_counts(name, millions, digits):
    # Papers (PyTorch) count BN gamma/beta but not the running statistics.
    n = count_params(models.build(name, input_shape=(32, 32, 3), num_classes=10),
                     trainable_only=True)
    assert round(n / 1e6, digits) == millions, n


def test_channel_zero_pad_values_and_config():
    layer = ChannelZeroPad(1, 2, name="pad")
    x = np.ones((2, 3, 3, 4), "float32")
    y = np.asarray(layer(x))
    assert y.shape == (2, 3, 3, 7)
    assert np.all(y[..., 1:5] == 1) and np.all(y[..., :1] == 0) and np.all(y[..., 5:] == 0)

    config = layer.get_config()
    assert (config["before"], config["after"], config["name"]) == (1, 2, "pad")
    clone = ChannelZeroPad.from_config(config)
    assert (clone.before, clone.after) == (1, 2)
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(revived, ChannelZeroPad) and revived.after == 2

    with pytest.raises(ValueError, match="before"):
        ChannelZeroPad(-1, 0)


def test_resnet_shortcut_a_saves_and_reloads(tmp_path):
    model = models.resnet(20, shortcut="A")
    assert any(isinstance(layer, ChannelZeroPad) for layer in model.layers)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype="float32")
    path = str(tmp_path / "resnet20.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))


def test_shortcut_b_projects_with_conv_and_bn():
    model = models.resnet(20, shortcut="B")
    names = {layer.name for layer in model.layers}
    assert {"stage2_block1_shortcut_conv", "stage2_block1_shortcut_bn"} <= names
    assert not any(isinstance(layer, ChannelZeroPad) for layer in model.layers)


def test_width_scales_channels():
    half = models.vgg(cfg=[16, "M", 32], width=0.5, input_shape=(16, 16, 1))
    assert half.get_layer("block1_conv1").filters == 8
    assert half.get_layer("block2_conv1").filters == 16
    assert models.mobilenet_v2(width=0.5).get_layer("stem_conv").filters == 16


def test_a_few_steps_reduce_the_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    brightness = rng.random((64, 1, 1, 1), dtype="float32")
    x = np.clip(brightness + 0.1 * rng.standard_normal((64, 16, 16, 1)), 0, 1).astype("float32")
    # Label = quartile of mean brightness: balanced, and learnable after global pooling.
    means = x.mean(axis=(1, 2, 3))
    y = np.searchsorted(np.quantile(means, [0.25, 0.5, 0.75]), means)
    model = models.vgg(cfg=[8, "M", 16], input_shape=(16, 16, 1), num_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=64, epochs=20, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("call, argument", [
    (lambda: models.build("resnet18"), "name"),
    (lambda: models.resnet(depth=21), "depth"),
    (lambda: models.densenet(depth=41), "depth"),
    (lambda: models.densenet(depth=43, bottleneck=True), "depth"),
    (lambda: models.preresnet(depth=100), "depth"),
    (lambda: models.vgg(depth=12), "depth"),
    (lambda: models.vgg(cfg=["M"]), "cfg"),
    (lambda: models.resnet(shortcut="C"), "shortcut"),
    (lambda: models.vgg(input_shape=(4, 4, 3)), "input_shape"),
    (lambda: models.mobilenet_v2(num_classes=0), "num_classes"),
    (lambda: models.densenet(compression=0), "compression"),
    (lambda: models.build("resnet20", depth=56), "depth"),
])
def test_bad_arguments_raise_value_error_naming_them(call, argument):
    with pytest.raises(ValueError, match=argument) as info:
        call()
    if argument == "name":
        assert all(n in str(info.value) for n in models.MODEL_NAMES)
