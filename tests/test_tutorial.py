"""The README tutorial "Prune your own MobileNetV2 on your own photos", run through the
apps on a generated image folder: fit a new head → prune → fine-tune with distillation →
int8 export → evaluate."""
import os
import re

import pytest

from image_folder import CLASSES, write_image_folder
from keras_slim.apps import common


def run(app_name, *argv):
    import importlib

    module = importlib.import_module(f"keras_slim.apps.{app_name}")
    return common.run_in_process(module, [app_name, *argv])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "photos", per_class=30)


@pytest.fixture(scope="module")
def my_mobilenet(tmp_path_factory):
    """The user's own MobileNetV2 (here: random weights and 10 classes, saved as .keras)."""
    from keras_slim.compat import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                           weights=None, classes=10)

    for layer in model.layers:
        # Random init and a few dozen steps: BN's moving statistics must follow quickly
        # (an ImageNet-trained model has them already).
        if hasattr(layer, "moving_variance_initializer"):
            layer.momentum = 0.5
    path = str(tmp_path_factory.mktemp("model") / "my_mobilenet.keras")
    model.save(path)
    return path


def test_tutorial_end_to_end(photos, my_mobilenet, tmp_path, capsys):
    from keras_slim.export import read_metadata

    data = [f"--dataset=folder:{photos}", "--batch_size=16"]
    run("finetune", f"--model_path={my_mobilenet}", "--replace_head", *data, "--epochs=8",
        "--learning_rate=0.01", f"--output_dir={tmp_path / 'trained'}")
    trained = tmp_path / "trained" / "finetuned.keras"
    run("prune", f"--model_path={trained}", "--criterion=l1_norm", "--ratio=0.2",
        f"--output_dir={tmp_path / 'pruned'}")
    pruned = tmp_path / "pruned" / "pruned.keras"
    run("finetune", f"--model_path={pruned}", f"--teacher_path={trained}", *data,
        "--epochs=5", "--learning_rate=0.02", f"--output_dir={tmp_path / 'small'}")
    small = tmp_path / "small" / "finetuned.keras"
    tflite = tmp_path / "my_mobilenet_int8.tflite"
    run("export", f"--model_path={small}", "--mode=int8", f"--dataset=folder:{photos}",
        "--representative_samples=32", f"--plan={tmp_path / 'pruned' / 'plan.json'}",
        f"--output={tflite}")
    capsys.readouterr()
    run("evaluate", f"--model_path={tflite}", f"--dataset=folder:{photos}")
    out = capsys.readouterr().out

    for path in (trained, pruned, small, tflite, tmp_path / "pruned" / "plan.json"):
        assert os.path.isfile(path), path
    meta = read_metadata(str(tflite))
    assert meta["label_names"] == sorted(CLASSES)
    assert meta["normalization"]["mean"] == [0.5, 0.5, 0.5]
    assert meta["channel_plan"]["kept_channels"] < meta["channel_plan"]["total_channels"]
    accuracy = float(re.search(r"accuracy ([\d.]+)%", out).group(1)) / 100
    # chance: 1/3. An Intel Xeon ended at >= 70%; an AMD EPYC at 61% (11 of 18), before
    # and after stop 23's changes, so the bar is set between chance and that.
    assert accuracy >= 0.55, out
