"""Users' data and models through the apps: folder:/tfrecord: datasets, saved models,
keras.applications; each kind of bad input is one clear error naming the path or flag."""
import importlib
import os

import numpy as np
import pytest
from absl import app, flags

from image_folder import CLASSES, write_image_folder, write_tfrecord
from keras_slim.apps import common
from keras_slim.zoo import data


def run(app_name, *argv):
    module = importlib.import_module(f"keras_slim.apps.{app_name}")
    return common.run_in_process(module, [app_name, *argv])


def error_of(app_name, *argv):
    with pytest.raises((app.UsageError, flags.Error)) as info:
        run(app_name, *argv)
    return str(info.value)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("d") / "photos", per_class=6, size=20)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from keras_slim.compat import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    path = str(tmp_path_factory.mktemp("m") / "model.keras")
    model.save(path)
    return path


def test_folder_source_splits_disjointly_and_names_classes(photos):
    spec = data.info(f"folder:{photos}", image_size=16, validation_split=0.25)
    assert spec.label_names == tuple(sorted(CLASSES)) and spec.num_classes == 3
    assert spec.input_shape == (16, 16, 3)
    assert spec.num_examples == {"train": 14, "test": 4}
    x, y = data.numpy_arrays(f"folder:{photos}", "train", image_size=16,
                             validation_split=0.25, split_seed=3)
    xt, _ = data.numpy_arrays(f"folder:{photos}", "test", image_size=16,
                              validation_split=0.25, split_seed=3)
    assert x.shape == (14, 16, 16, 3) and xt.shape == (4, 16, 16, 3)
    assert -1.0 <= x.min() and x.max() <= 1.0 and set(y) == {0, 1, 2}
    # Disjoint files: no test image equals a training image.
    assert not any(np.allclose(a, b) for a in xt for b in x)


def test_tfrecord_source_reads_the_documented_feature_spec(tmp_path):
    path = write_tfrecord(tmp_path / "d.tfrecord", per_class=4)
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    spec = data.info(f"tfrecord:{tmp_path}/*.tfrecord", image_size=12, validation_split=0.25)
    assert spec.label_names == CLASSES and spec.num_examples == {"train": 9, "test": 3}
    x, y = data.numpy_arrays(f"tfrecord:{path}", "test", image_size=12, validation_split=0.25)
    assert x.shape == (3, 12, 12, 3) and list(y) == [0, 1, 2]


def test_corrupt_image_names_the_file(small_model, tmp_path):
    root = write_image_folder(tmp_path / "p", per_class=3, size=16)
    bad = os.path.join(root, CLASSES[0], "broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"this is not a jpeg")
    assert bad in error_of("evaluate", f"--model_path={small_model}", f"--dataset=folder:{root}")


def test_empty_class_folder_names_it(small_model, tmp_path):
    root = write_image_folder(tmp_path / "p", per_class=3, size=16)
    os.makedirs(os.path.join(root, "empty_class"))
    message = error_of("finetune", f"--model_path={small_model}", f"--dataset=folder:{root}",
                       f"--output_dir={tmp_path / 'o'}")
    assert "empty_class" in message and "no images" in message


def test_one_class_folder_is_an_error(small_model, tmp_path):
    root = write_image_folder(tmp_path / "p", per_class=3, size=16, classes=("only",))
    message = error_of("export", f"--model_path={small_model}", f"--dataset=folder:{root}",
                       f"--output={tmp_path / 'm.tflite'}")
    assert "--dataset" in message and "at least 2 classes" in message


def test_image_size_mismatch_names_the_flag(photos, small_model, tmp_path):
    message = error_of("finetune", f"--model_path={small_model}", f"--dataset=folder:{photos}",
                       "--image_size=24", f"--output_dir={tmp_path}")
    assert "--image_size=24" in message and "(16, 16, 3)" in message


def test_unreadable_model_file_names_it(photos, tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"garbage")
    message = error_of("evaluate", f"--model_path={bad}", f"--dataset=folder:{photos}")
    assert f"--model_path={bad}" in message


def test_imagenet_weights_offline_is_one_clear_error(photos, tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = error_of("train", "--model=keras.applications.MobileNetV2", "--weights=imagenet",
                       f"--dataset=folder:{photos}", "--image_size=32",
                       f"--output_dir={tmp_path}")
    assert "--weights=imagenet" in message and "cannot be downloaded" in message


def test_weights_file_works_offline_and_replace_head_fits_the_classes(photos, tmp_path):
    from keras_slim.compat import keras
    from keras_slim.zoo import applications

    model = applications.application("MobileNetV2", (32, 32, 3), 3, weights=None)
    weights = str(tmp_path / "mine.weights.h5")
    model.save_weights(weights)
    loaded = applications.application("keras.applications.MobileNetV2", (32, 32, 3), 3,
                                      weights=weights)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    wider = applications.replace_head(model, 5)
    assert wider.output_shape == (None, 5) and model.output_shape == (None, 3)
    assert isinstance(wider, keras.Model)


def test_unknown_dataset_name_is_a_flag_error():
    assert "--dataset" in error_of("evaluate", "--model_path=/dev/null",
                                   "--dataset=no_such_dataset_anywhere")
