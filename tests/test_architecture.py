"""The library's face and its layering: the public API, what a wheel installs, layer-kind
knowledge only in the rule registry, one walker over nested models."""
import ast
import inspect
import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from keras_slim.compat import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRY = {os.path.join("keras_slim", "core", "rules.py"),
            os.path.join("keras_slim", "core", "op_rules.py")}
# Fragments of layer class names that a prefix/suffix test would use.
NAME_FRAGMENTS = ("Conv", "Depthwise", "Separable", "Transpose", "Pooling", "Normalization",
                  "Dense", "Dropout", "Padding")


def test_public_api_resolves_every_name():
    import keras_slim as ks

    assert callable(ks.rebuild) and callable(ks.register_rule) and callable(ks.load_model)
    for name in ks.__all__:
        assert getattr(ks, name) is not None, name
    assert set(ks.__all__) <= set(dir(ks))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ks.nope  # noqa: B018


def test_every_public_module_declares_all():
    for package in ("keras_slim.slimming", "keras_slim.dce", "keras_slim.export"):
        module = __import__(package, fromlist=["__all__"])
        for name in module.__all__:
            assert hasattr(module, name), f"{package}.{name}"


def _python_files():
    for folder in ("keras_slim", "export", "apps"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(base, name), ROOT)


def _layer_class_names():
    names = {n for n, c in vars(keras.layers).items()
             if inspect.isclass(c) and issubclass(c, keras.layers.Layer)}
    return names | {"InputLayer", "TFOpLambda", "SlicingOpLambda", "GatedConv2D",
                    "GatedBatchNormalization", "ChannelGate", "ChannelZeroPad",
                    "GatedDepthwiseConv2D", "GatedChannelZeroPad", "ChannelExpand"}


def _class_name_tests(path, layer_names):
    """Places in a file that test a layer's kind by its class name."""
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    exported = set()  # strings in __all__ / the API table name exports, not kinds
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("__all__", "_API") for t in node.targets):
            exported |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value in layer_names and id(node) not in exported:
            found.append(f"{path}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("startswith", "endswith"):
            text = ast.unparse(node.args[0]) if node.args else ""
            if any(f in text for f in NAME_FRAGMENTS):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_layer_kinds_are_known_only_to_the_rule_registry():
    names = _layer_class_names()
    found = [hit for path in _python_files() if path not in REGISTRY
             for hit in _class_name_tests(path, names)]
    # The walker names the one structural kind: an input placeholder entry.
    found = [hit for hit in found if not hit.startswith(os.path.join(
        "keras_slim", "core", "walk.py")) or "'InputLayer'" not in hit]
    assert not found, "class-name tests outside keras_slim/core/rules.py:\n" + "\n".join(found)


def test_the_scan_catches_a_class_name_test(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text('def kind(op):\n    return op.class_name == "Conv2D" or '
                   'op.class_name.startswith("Depthwise")\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert len(_class_name_tests("bad.py", _layer_class_names())) == 2


def test_a_wheel_installs_only_the_keras_slim_package(tmp_path):
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if os.path.isfile(os.path.join(ROOT, name)) and not name.startswith("benchmarks/results"):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy(os.path.join(ROOT, name), source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"keras_slim"}
    assert "keras_slim/export/convert.py" in names and "keras_slim/apps/slim.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "keras-slim-slim = keras_slim.apps.slim:launch" in text


def _conv_net():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.SeparableConv2D(24, 3, padding="same", name="s2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


def test_gated_model_profiles_like_the_plain_one():
    from keras_slim.core.metrics import profile
    from keras_slim.dce import gate_model

    model = _conv_net()
    plain, gated = profile(model), profile(gate_model(model, 0.5))
    assert gated["macs"] == plain["macs"] > 1_000_000
    for path, counts in plain["layers"].items():
        assert gated["layers"][path]["macs"] == counts["macs"], path


def test_macs_come_from_the_rules():
    from keras_slim.core.metrics import profile

    layers = profile(_conv_net())["layers"]
    assert layers["c1"]["macs"] == 16 * 16 * 9 * 3 * 16
    assert layers["s2"]["macs"] == 16 * 16 * (9 * 16 + 16 * 24)
    assert layers["head"]["macs"] == 32 * 10
    assert layers["bn1"]["macs"] == 0


def _nested():
    inner_in = keras.Input((8, 8, 8))
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inner_in)
    y = keras.layers.BatchNormalization(name="bn")(y)
    inner = keras.Model(inner_in, y, name="block")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="stem")(inputs)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_one_walker_sees_nested_layers_as_the_graph_does():
    from keras_slim.core.graph import ChannelGraph
    from keras_slim.core.walk import config_entry_at, copy_weights, iter_layers, layer_at

    model = _nested()
    paths = [p for p, _ in iter_layers(model)]
    assert "block/conv" in paths and "block" not in paths
    graph_paths = [op.path for op in ChannelGraph(model).ops if not op.is_input]
    assert [p for p in paths if p in graph_paths] == graph_paths
    assert layer_at(model, "block/bn").name == "bn"
    assert config_entry_at(model.get_config(), "block/conv")["config"]["filters"] == 8
    other = _nested()
    copy_weights(model, other)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(other(x)), np.asarray(model(x)), atol=1e-6)


def test_registered_rule_makes_a_custom_layer_prunable():
    from keras_slim import register_rule
    from keras_slim.core import rules
    from keras_slim.core.graph import ChannelGraph

    class ChannelScale(keras.layers.Layer):  # y = x * w, one w per channel
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

        def call(self, x):
            return x * self.w

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, name="conv")(inputs)
    x = ChannelScale(name="scale")(x)
    x = keras.layers.Conv2D(8, 1, name="proj")(x)
    model = keras.Model(inputs, x)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            before = ChannelGraph(model)
        assert any("'scale' (ChannelScale) has no channel rule" in str(w.message)
                   for w in caught)
        assert not before.group_of("conv").prunable.any()
        register_rule(ChannelScale, "per_channel")
        after = ChannelGraph(model)
        assert after.group_of("conv").prunable.all()
        with pytest.raises(ValueError, match="Received: rule='nope'"):
            register_rule(ChannelScale, "nope")
    finally:
        rules.RULES.pop("ChannelScale", None)


def test_rebuild_shows_progress_over_the_sliced_layers(capsys):
    from keras_slim import criterion_plan, rebuild

    model = _conv_net()
    small = rebuild(model, criterion_plan(model, "l1_norm", 0.5), verbose=1)
    out = capsys.readouterr().out
    assert "6/6" in out  # c1, bn1, s2, bn2, c3, head carry weights
    assert small.get_layer("c1").filters < 16
