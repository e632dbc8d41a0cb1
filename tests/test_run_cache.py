"""benchmarks/run_cache.py: what a long benchmark keeps so a stopped run resumes."""
import os

import numpy as np
import pytest

from benchmarks.run_cache import RunCache
from keras_slim import slimming
from keras_slim.compat import keras

SETTINGS = {"epochs": 8, "finetune_epochs": 8, "ratios": (0.5, 0.7)}


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_a_kept_step_reads_back_with_its_model(tmp_path):
    cache = RunCache(str(tmp_path), SETTINGS)
    assert cache.record("vgg_small L1 70%") is None
    model = slimming.slimmable(_model(), l1=1e-3)  # keras-slim's own layers load too
    record = {"row": "L1 70%", "final": 0.9123456789, "curve": [0.5, 0.75]}
    cache.keep("vgg_small L1 70%", record, model)

    again = RunCache(str(tmp_path), dict(SETTINGS))  # a rerun: same settings
    assert again.record("vgg_small L1 70%") == record
    loaded = again.model("vgg_small L1 70%")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.record("vgg_small L1 50%") is None


def test_other_settings_are_refused_naming_what_changed(tmp_path):
    RunCache(str(tmp_path), SETTINGS)
    with pytest.raises(ValueError, match=r"finetune_epochs: 8 there, 6 now"):
        RunCache(str(tmp_path), dict(SETTINGS, finetune_epochs=6))


def test_a_step_without_its_record_is_not_done(tmp_path):
    cache = RunCache(str(tmp_path), SETTINGS)
    cache.keep("a row", {"final": 1.0})
    os.remove(os.path.join(str(tmp_path), "a_row.json"))  # as if stopped before the record
    assert cache.record("a row") is None
    assert not [f for f in os.listdir(str(tmp_path)) if f.endswith(".tmp")]


def test_no_directory_keeps_nothing():
    cache = RunCache(None, SETTINGS)
    cache.keep("a row", {"final": 1.0}, _model())
    assert cache.record("a row") is None
