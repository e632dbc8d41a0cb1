"""The absl apps run as users run them (`python -m keras_slim.apps.X --flags`), and
in-process through keras_slim.apps.common.run_in_process where a subprocess only costs
TensorFlow's import."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"


def run_app(name, *args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", f"keras_slim.apps.{name}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not os.path.isdir(FMNIST) and not os.environ.get("CI"),
                    reason="needs Debian's dataset-fashion-mnist")
def test_slim_runs_end_to_end_on_a_real_fashion_mnist_subset(tmp_path):
    out = tmp_path / "run"
    result = run_app("slim", "--train_take=512", "--epochs=1", "--finetune_epochs=1",
                     "--batch_size=64", "--ratio=0.5", "--eval_samples=200",
                     "--representative_samples=16", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("before.keras", "after.keras", "plan.json", "before_int8.tflite",
                 "after_int8.tflite", "report.json", "report.md", "report.png"):
        assert (out / name).is_file(), name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tensorboard").is_dir()
    rows = json.loads((out / "report.json").read_text())["rows"]
    before, after = rows
    assert after["params"] < before["params"] and after["macs"] < before["macs"]
    assert after["tflite_kb"] < before["tflite_kb"]
    assert "int8 .tflite for the phone" in result.stdout and "change" in result.stdout


@pytest.mark.parametrize("args, flag", [
    (["--dataset=imagenet"], "--dataset"),
    (["--model=vgg99"], "--model"),
    (["--ratio=1.5"], "--ratio"),
    (["--epochs=0"], "--epochs"),
    (["--output_dir=/proc/nope"], "--output_dir"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(args, flag):
    assert flag in usage_error("slim", args)


def usage_error(app_name, args):
    """The message of the flag or usage error an app raises for `args`, in-process."""
    from absl import app, flags

    from keras_slim.apps import common

    module = importlib.import_module(f"keras_slim.apps.{app_name}")
    with pytest.raises((flags.Error, app.UsageError)) as error:
        common.run_in_process(module, [app_name, *args])
    return str(error.value)


def test_every_app_imports_and_defines_its_flags_in_one_process():
    from absl import flags

    names = ["slim", "train", "prune", "finetune", "export", "evaluate", "benchmark"]
    modules = [importlib.import_module(f"keras_slim.apps.{n}") for n in names]
    for module in modules + modules[:1]:  # the first again: redefinition must work
        module.define_flags()
    assert flags.FLAGS["ratio"].default == 0.6  # slim's own default, defined last
    importlib.import_module("keras_slim.apps.prune").define_flags()
    assert flags.FLAGS["ratio"].default == 0.5  # prune's


def test_helpfull_explains_the_flags():
    result = run_app("slim", "--helpfull", timeout=300)  # absl exits 1 after help
    for flag in ("--dataset", "--model", "--ratio", "--l1", "--output_dir", "--flagfile"):
        assert flag in result.stdout


@pytest.fixture(scope="module")
def trained_path(tmp_path_factory):
    from keras_slim.zoo import models

    model = models.vgg(cfg=[16, "M", 16, "M", 32], input_shape=(28, 28, 1), num_classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # distinct γ so the plan has something to rank
        if "bn" in layer.name:
            weights = layer.get_weights()
            weights[0] = rng.uniform(0.1, 1.0, weights[0].shape).astype("float32")
            layer.set_weights(weights)
    path = tmp_path_factory.mktemp("model") / "trained.keras"
    model.save(path)
    return path


@pytest.mark.skipif(not os.path.isdir(FMNIST) and not os.environ.get("CI"),
                    reason="needs Debian's dataset-fashion-mnist")
def test_prune_export_evaluate_chain(trained_path, tmp_path):
    dry = run_app("prune", f"--model_path={trained_path}", "--ratio=0.5", "--dry_run",
                  f"--output_dir={tmp_path / 'dry'}")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "kept / total" in dry.stdout and not (tmp_path / "dry" / "plan.json").exists()

    out = tmp_path / "pruned"
    pruned = run_app("prune", f"--model_path={trained_path}", "--ratio=0.5",
                     "--round_to=4", "--normalizer=mean", f"--output_dir={out}")
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    assert (out / "pruned.keras").is_file() and (out / "plan.json").is_file()
    assert json.loads((out / "plan.json").read_text())["meta"]["normalizer"] == "mean"
    assert "smaller" in pruned.stdout

    tflite = tmp_path / "m.tflite"
    exported = run_app("export", f"--model_path={out / 'pruned.keras'}", "--mode=int8",
                       f"--plan={out / 'plan.json'}", "--representative_samples=16",
                       "--eval_samples=100", f"--output={tflite}")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "top-1 agreement" in exported.stdout
    from keras_slim import export
    meta = export.read_metadata(str(tflite))
    assert meta["dataset"] == "fashion_mnist" and "channel_plan" in meta

    for path in (tflite, out / "pruned.keras"):
        evaluated = run_app("evaluate", f"--model_path={path}", "--take=200")
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        assert "accuracy" in evaluated.stdout and "on 200 examples" in evaluated.stdout


@pytest.mark.parametrize("app_name, args, flag", [
    ("prune", [], "--model_path"),
    ("prune", ["--model_path=/nonexistent.keras"], "--model_path"),
    ("prune", ["--model_path=/dev/null", "--ratio=1.5"], "--ratio"),
    ("export", ["--model_path=/dev/null", "--mode=int4", "--output=/tmp/x.tflite"], "--mode"),
    ("evaluate", ["--model_path=/dev/null", "--dataset=imagenet"], "--dataset"),
])
def test_other_apps_reject_bad_flags(app_name, args, flag):
    assert flag in usage_error(app_name, args)


def test_bad_flags_in_a_subprocess_give_usage_not_a_traceback():
    result = run_app("prune", "--model_path=/dev/null", "--ratio=1.5", timeout=300)
    assert result.returncode != 0
    assert "--ratio" in result.stderr and "Traceback" not in result.stderr
