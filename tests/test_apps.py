"""The absl apps run as users run them: `python -m apps.X --flags`."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"


def run_app(name, *args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", f"apps.{name}", *args], cwd=ROOT, env=env,
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
                 "after_int8.tflite", "report.json", "report.md"):
        assert (out / name).is_file(), name
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
    result = run_app("slim", *args, timeout=120)
    assert result.returncode != 0
    assert flag in result.stderr and "Traceback" not in result.stderr


def test_helpfull_explains_the_flags():
    result = run_app("slim", "--helpfull", timeout=120)  # absl exits 1 after help
    for flag in ("--dataset", "--model", "--ratio", "--l1", "--output_dir", "--flagfile"):
        assert flag in result.stdout
