"""export/: TFLite conversion in every mode, LiteRT verification, metadata, QAT, benchmark.

Models are tiny (8x8 inputs, a few thousand weights) so both Keras flavours stay fast.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import LEGACY_KERAS, keras
from keras_slim import export
from keras_slim.export import ExportError

SHAPE = (8, 8, 1)
CLASSES = 3


def _synthetic(n, seed):
    """Three well-separated classes: a bright blob in a different corner per class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.normal(0.0, 0.3, (n,) + SHAPE).astype(np.float32)
    for c, (r, k) in enumerate([(0, 0), (0, 4), (4, 2)]):
        x[y == c, r:r + 4, k:k + 4, 0] += 2.0
    return x, y


def _tiny_net(softmax=True):
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax" if softmax else None,
                                 name="fc")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def data():
    return _synthetic(512, 0), _synthetic(256, 1)


@pytest.fixture(scope="module")
def trained(data):
    keras.utils.set_random_seed(0)
    (x, y), _ = data
    model = _tiny_net()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def int8_file(trained, data, tmp_path_factory):
    (x, _), _ = data
    path = tmp_path_factory.mktemp("int8") / "tiny_int8.tflite"
    export.convert(trained, "int8", representative_data=x[:100], output_path=path)
    return path


# ------------------------------------------------------------------------ conversion

@pytest.mark.parametrize("mode", export.MODES)
def test_every_mode_converts_and_runs_in_litert(mode, trained, data):
    (x, _), (xt, yt) = data
    rep = x[:64] if mode in ("int8", "int16x8") else None
    content = export.convert(trained, mode, representative_data=rep)
    report = export.verify(content, keras_model=trained, x=xt, y=yt)
    assert "DELEGATE" not in report["ops"] and not any(o.startswith("Flex") for o in report["ops"])
    assert "CONV_2D" in report["ops"]
    expected_io = "int8" if mode == "int8" else "float32"
    assert report["inputs"][0]["dtype"] == expected_io
    assert report["outputs"][0]["dtype"] == expected_io
    assert report["agreement"] >= 0.97
    # the fixture's training differs by processor: check the export keeps what it learned
    assert report["keras_accuracy"] > 0.8
    assert report["accuracy"] >= report["keras_accuracy"] - 0.03


def test_float32_matches_keras(trained, data):
    _, (xt, _) = data
    report = export.verify(export.convert(trained, "float32"), keras_model=trained, x=xt)
    assert report["max_abs_diff"] <= 1e-4
    assert report["agreement"] == 1.0


def test_int8_file_has_int8_io_and_agrees(int8_file, trained, data):
    _, (xt, yt) = data
    report = export.verify(int8_file, keras_model=trained, x=xt, y=yt)
    for tensor in report["inputs"] + report["outputs"]:
        assert tensor["dtype"] == "int8" and tensor["quantized"]
    assert report["agreement"] >= 0.98
    assert report["accuracy"] >= report["keras_accuracy"] - 0.02
    assert report["file"] == repr(os.fspath(int8_file))


def test_representative_callable_like_keras_slim_data(trained, data):
    (x, _), _ = data

    def generator():  # the form keras_slim.zoo.data.representative_dataset returns
        for i in range(32):
            yield [x[i:i + 1]]

    content = export.convert(trained, "int8", representative_data=generator)
    assert export.verify(content)["inputs"][0]["dtype"] == "int8"


def test_flex_op_is_refused_naming_the_op():
    class Determinant(keras.layers.Layer):  # tf.linalg.det has no TFLite builtin
        def call(self, x):
            return tf.linalg.det(tf.reshape(x, (-1, 4, 4)))

    inputs = keras.Input((16,))
    model = keras.Model(inputs, Determinant(name="det_layer")(inputs))
    with pytest.raises(ExportError, match="MatrixDeterminant") as info:
        export.convert(model, "float32")
    assert "Flex" in str(info.value) and "det_layer" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unsupported_ops_parser():
    assert export.unsupported_ops("x\nTF Select ops: Svd, MatrixDeterminant\nDetails") == [
        "Svd", "MatrixDeterminant"]
    assert export.unsupported_ops("'tf.Erfinv' op is neither a custom op nor a flex op") == [
        "Erfinv"]


# ------------------------------------------------------------------------ bad input

def test_bad_mode_and_calibration_arguments(trained, data):
    (x, _), _ = data
    with pytest.raises(ExportError, match="mode must be one of"):
        export.convert(trained, "int4")
    with pytest.raises(ExportError, match="needs representative_data"):
        export.convert(trained, "int8")
    with pytest.raises(ExportError, match="only used by modes"):
        export.convert(trained, "float16", representative_data=x[:4])


def test_empty_representative_dataset(trained):
    with pytest.raises(ExportError, match="representative_data is empty"):
        export.convert(trained, "int8", representative_data=lambda: iter([]))
    with pytest.raises(ExportError, match="representative_data is empty"):
        export.convert(trained, "int16x8", representative_data=np.zeros((0,) + SHAPE, "float32"))


def test_wrong_shape_representative_samples(trained):
    wrong = np.zeros((4, 9, 9, 1), "float32")
    with pytest.raises(ExportError, match=r"expects \(batch, 8, 8, 1\)"):
        export.convert(trained, "int8", representative_data=wrong)
    with pytest.raises(ExportError, match=r"expects \(batch, 8, 8, 1\)"):
        export.convert(trained, "int8", representative_data=lambda: ([w[None]] for w in wrong))
    with pytest.raises(ExportError, match=r"expected \(num_samples, 8, 8, 1\)"):
        export.convert(trained, "int8", representative_data=np.zeros((8, 8), "float32"))


def test_model_without_input_shape():
    model = keras.Sequential([keras.layers.Dense(2)], name="unbuilt")
    with pytest.raises(ExportError, match="no defined input shape"):
        export.convert(model, "float32")


def test_not_a_model():
    with pytest.raises(TypeError, match="model must be a Keras model"):
        export.convert("model.keras", "float32")


def test_output_path_errors(trained, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.convert(trained, output_path=tmp_path / "missing" / "m.tflite")
    with pytest.raises(ExportError, match="is a directory"):
        export.convert(trained, output_path=tmp_path)
    # Root ignores directory permissions, so fake a read-only directory.
    monkeypatch.setattr(export.errors.os, "access", lambda *a: False)
    with pytest.raises(PermissionError, match="not writable"):
        export.convert(trained, output_path=tmp_path / "m.tflite")


def test_corrupt_and_missing_files(tmp_path, int8_file):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(ExportError, match="junk.tflite.*not a TFLite model"):
        export.verify(junk)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(int8_file.read_bytes()[:-64])
    with pytest.raises(ExportError, match="truncated.tflite"):
        export.verify(truncated)
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        export.verify(tmp_path / "nope.tflite")
    with pytest.raises(ExportError, match="not a TFLite model"):
        export.read_metadata(b"not a model at all")


# ------------------------------------------------------------------------ metadata

def test_metadata_round_trip_keeps_outputs(trained, data, tmp_path):
    _, (xt, _) = data
    from keras_slim.core.plan import l1_norm_plan
    meta = export.build_metadata(dataset="fashion_mnist", plan=l1_norm_plan(trained, 0.5, round_to=1))
    plain = export.convert(trained, "float32")
    path = tmp_path / "with_meta.tflite"
    tagged = export.convert(trained, "float32", metadata=meta, output_path=path)
    assert export.read_metadata(plain) is None
    read = export.read_metadata(path)
    assert read == meta
    assert read["label_names"][0] == "T-shirt/top"
    assert read["normalization"]["mean"] == [0.286] and read["normalization"]["std"] == [0.353]
    assert read["channel_plan"]["kept_channels"] < read["channel_plan"]["total_channels"]
    np.testing.assert_array_equal(export.predict(plain, xt), export.predict(tagged, xt))
    # Writing again replaces the entry instead of adding a second one.
    again = export.add_metadata(tagged, {"version": 2})
    assert export.read_metadata(again) == {"version": 2}
    np.testing.assert_array_equal(export.predict(again, xt), export.predict(plain, xt))


def test_metadata_on_quantized_file(int8_file, data, tmp_path):
    _, (xt, _) = data
    out = tmp_path / "int8_meta.tflite"
    export.add_metadata(int8_file, {"label_names": ["a", "b", "c"]}, output_path=out)
    assert export.read_metadata(out) == {"label_names": ["a", "b", "c"]}
    np.testing.assert_array_equal(export.predict(out, xt), export.predict(int8_file, xt))


def test_metadata_must_be_json(trained):
    with pytest.raises(ExportError, match="JSON"):
        export.convert(trained, "float32", metadata={"bad": object()})
    with pytest.raises(ExportError, match="must be a dict"):
        export.convert(trained, "float32", metadata=["labels"])


# ------------------------------------------------------------------------ benchmark

def test_benchmark_reports_size_and_latency(int8_file):
    result = export.benchmark_tflite(int8_file, threads=(1, 2), warmup=1, runs=5)
    assert result["size_bytes"] == os.path.getsize(int8_file)
    assert set(result["latency_ms"]) == {1, 2}
    for stats in result["latency_ms"].values():
        assert 0 < stats["median"] <= stats["p90"]
    with pytest.raises(ExportError, match="runs must be"):
        export.benchmark_tflite(int8_file, runs=0)


def test_benchmark_without_xnnpack_runs_the_builtin_kernels(trained, data):
    _, (xt, _) = data
    content = export.convert(trained, "float32")
    ops = {}
    for xnnpack in (True, False):
        interpreter, _, _ = export.load_interpreter(content, num_threads=1, xnnpack=xnnpack)
        # Private, but the only way to see whether a delegate took over the graph.
        ops[xnnpack] = [op["op_name"] for op in interpreter._get_ops_details()]
    assert "DELEGATE" in ops[True] and "DELEGATE" not in ops[False]
    assert "CONV_2D" in ops[False]
    result = export.benchmark_tflite(content, threads=1, warmup=1, runs=3, xnnpack=False)
    assert result["xnnpack"] is False and result["latency_ms"][1]["median"] > 0


# ------------------------------------------------------------------------ QAT

@pytest.mark.skipif(not LEGACY_KERAS, reason="tfmot needs tf_keras (TF_USE_LEGACY_KERAS=1)")
def test_qat_end_to_end_under_tf_keras(data):
    (x, y), (xt, yt) = data
    model = _tiny_net(softmax=False)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    qat = export.qat_finetune(model, (x, y), epochs=1, steps_per_epoch=16, learning_rate=1e-3)
    assert export.is_qat_model(qat)
    content = export.convert(qat, "int8")  # the fake-quant ranges replace calibration
    report = export.verify(content, keras_model=qat, x=xt, y=yt)
    assert report["inputs"][0]["dtype"] == "int8" and report["outputs"][0]["dtype"] == "int8"
    assert report["agreement"] >= 0.95
    assert report["accuracy"] > 0.9


@pytest.mark.skipif(LEGACY_KERAS, reason="the Keras 3 branch of QAT")
def test_qat_under_keras3_says_how_to_fix(trained, data):
    with pytest.raises(ExportError, match="TF_USE_LEGACY_KERAS=1"):
        export.quantize_aware(trained)
    with pytest.raises(ExportError, match="TF_USE_LEGACY_KERAS=1"):
        export.qat_finetune(trained, data[0], epochs=1)
