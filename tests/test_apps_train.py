"""apps.train / finetune / benchmark, prune --criterion=dce, and resuming killed runs, run
as users run them (`python -m keras_slim.apps.X --flags`) on a few steps of real Fashion-MNIST."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"


def run_app(name, *args, timeout=600):  # as in test_apps.py (not importable under Bazel)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", f"keras_slim.apps.{name}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST) and not os.environ.get("CI"),
                                  reason="needs Debian's dataset-fashion-mnist")
# 256 images in batches of 64: 4 steps per epoch.
TINY = ["--train_take=256", "--batch_size=64", "--test_take=256"]
STEPS_PER_EPOCH = 4


def _state(out):
    return json.loads((out / "state.json").read_text())


@pytest.fixture(scope="module")
def dce_run(tmp_path_factory):
    """apps.train --method=dce killed after 7 of 8 steps (last checkpoint: step 6, in the
    middle of epoch 2), then rerun with the same flags."""
    out = tmp_path_factory.mktemp("dce")
    args = ["--method=dce", "--epochs=2", "--fraction=0.5", "--warmup_steps=2",
            "--checkpoint_every_steps=3", f"--output_dir={out}", *TINY]
    killed = run_app("train", *args, "--stop_after_steps=7")
    resumed = run_app("train", *args)
    return out, killed, resumed


@needs_fmnist
def test_dce_training_resumes_from_its_last_checkpoint(dce_run):
    out, killed, resumed = dce_run
    assert killed.returncode == 3, killed.stderr[-3000:]
    assert "--stop_after_steps=7" in killed.stdout
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # It restarted at the checkpoint of step 6 (epoch 2, 2 of 4 steps done) ...
    assert "resuming from the checkpoint at step 6 (epoch 2, 2 of 4 steps done)" \
        in resumed.stdout
    assert "restored the bandit state of" in resumed.stdout
    assert "warning" not in resumed.stdout
    # ... and ran the 2 steps left, not the whole epoch again: 8 steps in all.
    total = 2 * STEPS_PER_EPOCH
    done = _state(out)["phases"]["train"]["outputs"]
    assert done["steps"] == total and done["resumed_at_step"] == 6
    assert done["optimizer_iterations"] == total

    from keras_slim.apps import common
    from keras_slim.dce import gates as gating
    model = common.load_keras_model(str(out / "model.keras"))
    assert int(model.optimizer.iterations.numpy()) == total
    gates = gating.gates_of(model)
    assert gates and all(np.all(g.mask.numpy() == 1.0) for g in gates)  # all channels on

    # The bandits played exactly once per step: t = steps, Σ T = steps × k per group.
    state = json.loads((out / "bandit.json").read_text())
    assert state["bandits"] and {g.group for g in gates} == set(state["bandits"])
    for name, bandit in state["bandits"].items():
        assert bandit["t"] == total, name
        assert sum(bandit["T"]) == total * bandit["k"], name
        assert max(bandit["T"]) <= total
    assert (out / "tensorboard" / "dce").is_dir()
    assert list((out / "tensorboard" / "active_channels").glob("events.out.tfevents.*"))
    assert not (out / "checkpoints").exists()  # dropped once the phase finished


@needs_fmnist
def test_finished_run_is_not_redone_and_changed_flags_are_refused(dce_run):
    out, _, resumed = dce_run
    assert resumed.returncode == 0
    again = run_app("train", "--method=dce", "--epochs=2", "--fraction=0.5",
                    "--warmup_steps=2", f"--output_dir={out}", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "finished in an earlier run, skipped" in again.stdout
    other = run_app("train", "--method=dce", "--epochs=3", "--fraction=0.5",
                    "--warmup_steps=2", f"--output_dir={out}", *TINY, timeout=300)
    assert other.returncode != 0
    assert "--epochs=2" in other.stderr and "Traceback" not in other.stderr


@needs_fmnist
def test_prune_by_dce_saliency_then_finetune_then_benchmark(dce_run, tmp_path):
    out, _, resumed = dce_run
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    pruned_dir = tmp_path / "pruned"
    pruned = run_app("prune", f"--model_path={out / 'model.keras'}", "--criterion=dce",
                     "--ratio=0.5", f"--output_dir={pruned_dir}")
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    plan = json.loads((pruned_dir / "plan.json").read_text())
    assert "dce" in json.dumps(plan)
    assert "smaller" in pruned.stdout

    tuned_dir = tmp_path / "finetuned"
    tuned = run_app("finetune", f"--model_path={pruned_dir / 'pruned.keras'}", "--epochs=1",
                    "--learning_rate=0.01", f"--output_dir={tuned_dir}", *TINY)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    assert (tuned_dir / "finetuned.keras").is_file()
    assert "test accuracy: before" in tuned.stdout and "after" in tuned.stdout
    assert re.search(r"statistics re-estimated on \d+ training batches", tuned.stdout)
    done = _state(tuned_dir)["phases"]["finetune"]["outputs"]
    assert 0.0 <= done["accuracy_before"] <= 1.0 and 0.0 <= done["accuracy_after"] <= 1.0

    bench_dir = tmp_path / "bench"
    bench = run_app("benchmark", f"--model_path={tuned_dir / 'finetuned.keras'}",
                    "--mode=int8", "--representative_samples=16", "--runs=5",
                    f"--output_dir={bench_dir}")
    assert bench.returncode == 0, bench.stderr[-2000:]
    result = json.loads((bench_dir / "benchmark.json").read_text())
    tflite = bench_dir / "finetuned_int8.tflite"
    assert tflite.is_file() and result["tflite"] == str(tflite)
    assert result["size_kb"] > 0 and result["latency_ms"]["1"]["median"] > 0
    assert 0 < result["params"] < 289_066 and 0 < result["macs"] < 29_128_448
    assert "finetuned_int8.tflite" in bench.stdout and "MACs" in bench.stdout

    # A .tflite is timed as it is: no params/MACs.
    again = run_app("benchmark", f"--model_path={tflite}", "--runs=5", "--noxnnpack",
                    f"--output_dir={tmp_path / 'bench2'}")
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads((tmp_path / "bench2" / "benchmark.json").read_text())
    assert result["params"] is None and result["size_kb"] > 0
    assert result["xnnpack"] is False and "no XNNPACK" in again.stdout


@needs_fmnist
@pytest.mark.parametrize("method", ["baseline", "slimming"])
def test_train_baseline_and_slimming(method, tmp_path):
    out = tmp_path / method
    result = run_app("train", f"--method={method}", "--epochs=1", f"--output_dir={out}",
                     *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.keras").is_file() and "test accuracy" in result.stdout
    done = _state(out)["phases"]["train"]["outputs"]
    assert done["steps"] == STEPS_PER_EPOCH == done["optimizer_iterations"]
    assert (out / "tensorboard" / method).is_dir()
    if method == "slimming":
        assert "of |γ| below 0.01" in result.stdout
        gamma_logs = os.listdir(out / "tensorboard" / "gamma")
        assert any(n.startswith("events.out.tfevents") for n in gamma_logs)
        # Saved with plain BN, so prune (bn_gamma), export and finetune read it directly.
        config = (out / "model.keras").read_bytes()
        assert b"SlimBatchNormalization" not in config


@needs_fmnist
def test_train_slimming_proximal_gives_exact_zero_gamma(tmp_path):
    from keras_slim.serialization import load_model
    from keras_slim.slimming import gamma_scores

    out = tmp_path / "proximal"
    result = run_app("train", "--method=slimming", "--proximal", "--l1=20", "--epochs=1",
                     f"--output_dir={out}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    gammas = np.concatenate(list(gamma_scores(load_model(str(out / "model.keras"))).values()))
    assert (gammas == 0).sum() > 0, gammas


@needs_fmnist
def test_slim_resumes_in_its_finetune_phase_without_redoing_earlier_phases(tmp_path):
    out = tmp_path / "slim"
    # 512 images / 64: 8 steps per epoch; sparsity training = steps 1-8, fine-tuning 9-16.
    args = ["--train_take=512", "--batch_size=64", "--test_take=256", "--epochs=1",
            "--finetune_epochs=1", "--ratio=0.5", "--eval_samples=100",
            "--representative_samples=16", "--checkpoint_every_steps=3",
            f"--output_dir={out}"]
    killed = run_app("slim", *args, "--stop_after_steps=12")  # fine-tuning step 4
    assert killed.returncode == 3, killed.stderr[-3000:]
    phases = _state(out)["phases"]
    assert set(phases) == {"sparsity", "prune"}
    before = (out / "before.keras").stat().st_mtime_ns
    resumed = run_app("slim", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("finished in an earlier run, skipped") == 2
    assert "resuming from the checkpoint at step 3 (epoch 1, 3 of 8 steps done)" \
        in resumed.stdout
    assert (out / "before.keras").stat().st_mtime_ns == before
    assert set(_state(out)["phases"]) == {"sparsity", "prune", "finetune", "report"}
    for name in ("after.keras", "after_int8.tflite", "report.md", "report.png"):
        assert (out / name).is_file(), name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_fmnist
@pytest.mark.parametrize("killed_at", [4, 8])  # mid-ramp; after the last step's checkpoint
def test_slim_pretrained_fades_what_it_prunes_across_a_resume(killed_at, tmp_path):
    from keras_slim.core.graph import ChannelGraph
    from keras_slim.core.plan import ChannelPlan
    from keras_slim.core.walk import iter_layers
    from keras_slim.serialization import load_model
    from keras_slim.slimming import gamma_scores
    from keras_slim.slimming.layer import is_bn

    out = tmp_path / "slim"
    # 8 steps of sparsity training, the fade over the first 6; killed after step 4
    args = ["--train_take=512", "--batch_size=64", "--test_take=256", "--pretrained",
            "--finetune_epochs=0", "--ratio=0.5", "--eval_samples=100",
            "--representative_samples=16", "--checkpoint_every_steps=2",
            "--normalizer=mean", f"--output_dir={out}"]
    killed = run_app("slim", *args, f"--stop_after_steps={killed_at}")
    assert killed.returncode == 3, killed.stderr[-3000:]
    resumed = run_app("slim", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "λ=0.0, fading the channels to remove to γ = β = 0" in resumed.stdout
    assert f"resuming from the checkpoint at step {killed_at}" in resumed.stdout
    flags = json.loads((out / "state.json").read_text())["flags"]  # --pretrained's table
    assert (flags["learning_rate"], flags["finetune_learning_rate"]) == (0.005, 0.02)
    faded = ChannelPlan.load(str(out / "faded_plan.json"))
    assert faded.meta["normalizer"] == "mean"
    assert faded.to_dict()["groups"] == ChannelPlan.load(str(out / "plan.json")).to_dict()["groups"]
    slim = load_model(str(out / "sparsity.keras"))
    graph = ChannelGraph(slim)
    removed = np.array(sorted(faded.removed_roots(graph)))
    for path, gamma in gamma_scores(slim).items():
        hit = np.isin(graph.channel_roots(path), removed)
        assert (gamma[hit] == 0).all() and (gamma[~hit] > 0).all(), path
    for path, layer in iter_layers(slim):  # β faded too, also across the resume
        if is_bn(layer):
            beta = np.asarray(layer.beta)
            assert (beta[np.isin(graph.channel_roots(path), removed)] == 0).all(), path
    # the "before" row and teacher is the model as it came, not the faded one
    before = gamma_scores(load_model(str(out / "before.keras")))
    assert all((before[path] > 0).all() for path in before)


@pytest.mark.parametrize("app_name, args, flag", [
    ("train", ["--method=pruning"], "--method"),
    ("train", ["--method=dce", "--fraction=1.5"], "--fraction"),
    ("train", ["--output_dir=/proc/x"], "--output_dir"),
    ("finetune", ["--model_path=/nonexistent/pruned.keras"], "--model_path"),
    ("benchmark", ["--model_path={tmp}/m.h5"], "--model_path"),
    ("benchmark", ["--model_path={tmp}/m.tflite", "--threads=1,0"], "--threads"),
    ("train", ["--logical_cpus=2"], "--logical_cpus"),
    ("train", ["--strategy=tpu"], "--strategy"),
    ("train", ["--strategy=multi_worker"], "--strategy"),  # no TF_CONFIG
])
def test_bad_flags_are_usage_errors_naming_the_flag(app_name, args, flag, tmp_path):
    for name in ("m.tflite", "m.h5"):
        (tmp_path / name).write_bytes(b"")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_app(app_name, *args, timeout=300)
    assert result.returncode != 0
    assert flag in result.stderr and "Traceback" not in result.stderr


def test_prune_by_dce_needs_the_bandit_state(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"")  # never read: the missing state is reported first
    result = run_app("prune", f"--model_path={model}", "--criterion=dce", timeout=300)
    assert result.returncode != 0
    assert "--bandit_state" in result.stderr and "Traceback" not in result.stderr


@needs_fmnist
def test_dce_training_on_two_mirrored_replicas(tmp_path):
    out = tmp_path / "run"
    result = run_app("train", "--method=dce", "--epochs=1", "--fraction=0.5",
                     "--warmup_steps=2", "--strategy=mirrored", "--logical_cpus=2",
                     f"--output_dir={out}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replicas in sync" in result.stdout
    state = json.loads((out / "bandit.json").read_text())
    assert all(b["t"] == STEPS_PER_EPOCH for b in state["bandits"].values())
    assert _state(out)["phases"]["train"]["outputs"]["optimizer_iterations"] == STEPS_PER_EPOCH
