"""tf.distribute: make_strategy, and DCE / Network Slimming under MirroredStrategy (two
logical CPUs) and MultiWorkerMirroredStrategy (two local worker processes).

Logical devices and collective ops must be set up before TensorFlow initialises, so the
distributed runs happen in subprocesses (tests/distribute_worker.py), which write their
results as JSON. Every scenario there starts from the same numpy-seeded weights and
data, with a global batch of 16 (8 per replica).

What is compared with one device:
- dce_compact / slim use synchronized BN, so 1 and 2 replicas compute the same step up
  to float rounding: bandit plays T (including the steps after warm-up, which follow the
  aggregated saliency), mean saliencies, plans, weights and γ must agree tightly. A
  wrong saliency aggregation (one replica's value) or a penalty counted per replica
  without Keras' 1/replicas scaling would break these by far more than the tolerance.
- dce_masked keeps Keras' default per-replica BN statistics, so values only agree
  loosely; half of c1's channels are made clearly weak (tiny γ), so the plan must still
  match exactly and drop exactly those.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_slim import compat
from keras_slim.training.distribute import configure_logical_cpus, make_strategy

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distribute_worker.py")
TIMEOUT = 300  # seconds per subprocess run; ~10-30 s alone, longer beside the other flavour
WEAK_C1 = [1, 3, 4, 6]  # distribute_worker.WEAK_C1


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the worker runs from tests/: import this checkout, not an installed keras_slim
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Every scenario on one device and on MirroredStrategy over 2 logical CPUs."""
    out = tmp_path_factory.mktemp("mirrored") / "results.json"
    try:
        run = subprocess.run([sys.executable, WORKER, "mirrored", str(out)], env=_env(),
                             capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        pytest.fail(f"the mirrored worker did not finish in {TIMEOUT} s:\n"
                    f"{_tail(str(e.stderr or ''))}")
    assert run.returncode == 0, f"mirrored worker failed:\n{_tail(run.stderr)}"
    with open(out) as f:
        results = json.load(f)
    assert results["flavour"] == compat.FLAVOUR
    assert results["again"] == 2 and results["auto"] == 2
    return results


def _assert_bandits_match(one, other, mu_rtol, mu_atol):
    assert one["T"].keys() == other["T"].keys()
    for group in one["T"]:
        np.testing.assert_array_equal(other["T"][group], one["T"][group],
                                      err_msg=f"plays T of group {group!r}")
        np.testing.assert_allclose(other["mu"][group], one["mu"][group], rtol=mu_rtol,
                                   atol=mu_atol, err_msg=f"mean saliency of {group!r}")


def _keep(result):
    return {g["name"]: g["keep"] for g in result["plan"]}


def _boundary_gap(result, keep_count):
    """Smallest gap between the last kept and the first dropped mean saliency."""
    gaps = []
    for mu in result["mu"].values():
        order = np.sort(mu)[::-1]
        gaps.append(order[keep_count - 1] - order[keep_count])
    return min(gaps)


def _assert_weights_close(one, other, atol):
    assert one["weights"].keys() == other["weights"].keys()
    for name in one["weights"]:
        np.testing.assert_allclose(other["weights"][name], one["weights"][name], atol=atol,
                                   err_msg=f"weight {name}")


# --- MirroredStrategy vs one device ------------------------------------------------------
def test_mirrored_dce_compact_matches_one_device(mirrored):
    one, two = mirrored["one"]["dce_compact"], mirrored["two"]["dce_compact"]
    assert one["replicas"] == 1 and two["replicas"] == 2
    # The test is only meaningful if the plan is not decided by a near tie.
    assert _boundary_gap(one, 4) > 1e-2
    _assert_bandits_match(one, two, mu_rtol=1e-4, mu_atol=1e-6)
    assert _keep(two) == _keep(one)
    # Compact training itself (gathered kernels, GatedBatchNormalization with synchronized
    # moments and its moving statistics, the active-index variables) agrees too.
    _assert_weights_close(one, two, atol=1e-5)


def test_mirrored_dce_masked_with_per_replica_bn_statistics(mirrored):
    one, two = mirrored["one"]["dce_masked"], mirrored["two"]["dce_masked"]
    assert two["replicas"] == 2
    _assert_bandits_match(one, two, mu_rtol=0.25, mu_atol=0.02)
    assert _keep(two) == _keep(one)
    for result in (one, two):
        assert not set(_keep(result)["c1"]) & set(WEAK_C1), _keep(result)
    _assert_weights_close(one, two, atol=2e-2)


def test_mirrored_slimming_matches_one_device(mirrored):
    one, two = mirrored["one"]["slim"], mirrored["two"]["slim"]
    assert two["replicas"] == 2
    # λ = 0.5 with SGD(0.05) for 6 steps moves every γ by ~0.15: the penalty dominates, so
    # a penalty not scaled by 1/replicas (counted twice) would show in γ.
    start = {"bn1": np.linspace(0.6, 1.4, 8)[::-1], "bn2": np.linspace(0.6, 1.4, 8)}
    for path, gamma in one["gamma"].items():
        assert (start[path] - np.asarray(gamma) > 0.1).all(), (path, gamma)
        np.testing.assert_allclose(two["gamma"][path], gamma, atol=1e-5,
                                   err_msg=f"|γ| of {path}")
    np.testing.assert_allclose(two["penalty"], one["penalty"], rtol=1e-5)
    assert _keep(two) == _keep(one)
    _assert_weights_close(one, two, atol=1e-5)


def test_mirrored_proximal_slimming_matches_one_device(mirrored):
    one, two = mirrored["one"]["slim_proximal"], mirrored["two"]["slim_proximal"]
    assert two["replicas"] == 2
    for path, gamma in one["gamma"].items():
        np.testing.assert_allclose(two["gamma"][path], gamma, atol=1e-5,
                                   err_msg=f"|γ| of {path}")
        # the soft-threshold is applied once per step on the host, not once per replica
        assert (np.asarray(two["gamma"][path]) == 0).sum() == \
            (np.asarray(gamma) == 0).sum(), path
    assert sum((np.asarray(g) == 0).sum() for g in one["gamma"].values()) >= 1
    _assert_weights_close(one, two, atol=1e-5)


def test_mirrored_gamma_fade_matches_one_device(mirrored):
    one, two = mirrored["one"]["slim_fade"], mirrored["two"]["slim_fade"]
    assert two["replicas"] == 2 and two["plan"] == one["plan"]
    for path, gamma in one["gamma"].items():
        np.testing.assert_allclose(two["gamma"][path], gamma, atol=1e-5,
                                   err_msg=f"|γ| of {path}")
    # the plan removes 8 of 16 channels: exactly those are 0, on every replica's copy
    assert sum((np.asarray(g) == 0).sum() for g in two["gamma"].values()) == 8
    _assert_weights_close(one, two, atol=1e-5)


def test_mirrored_distillation_matches_one_device(mirrored):
    one, two = mirrored["one"]["distill"], mirrored["two"]["distill"]
    assert two["replicas"] == 2
    assert one["loss"] > 0.1  # the teacher term is there to learn from
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    _assert_weights_close(one, two, atol=1e-5)


# --- MultiWorkerMirroredStrategy: two local workers -------------------------------------
def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.skipif(compat.KERAS3, reason=(
    "Keras 3's model.fit does not run under MultiWorkerMirroredStrategy: even a plain "
    "Dense model fails (strategy.reduce of PerReplica batches in _maybe_symbolic_build, "
    "then of scalar logs with axis=0), keras-team/keras#20585 / tensorflow#72388. "
    "Multi-worker training is supported on tf_keras (TF_USE_LEGACY_KERAS=1)."))
def test_multi_worker_two_local_processes(mirrored, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = []
    try:
        for i, (out, log) in enumerate(zip(outs, logs)):
            config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
            with open(log, "w") as stderr:
                procs.append(subprocess.Popen(
                    [sys.executable, WORKER, "multi_worker", str(out), "dce_compact"],
                    env=_env(TF_CONFIG=json.dumps(config)), stdout=subprocess.DEVNULL,
                    stderr=stderr))
        deadline = time.monotonic() + TIMEOUT
        # A worker that fails leaves the other waiting for it: stop at the first failure.
        while any(proc.poll() is None for proc in procs) \
                and not any(proc.poll() for proc in procs):
            if time.monotonic() > deadline:
                pytest.fail(f"the multi-worker run did not finish in {TIMEOUT} s")
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"worker {i} failed:\n{_tail(log.read_text())}"
    results = []
    for out in outs:
        with open(out) as f:
            results.append(json.load(f)["multi"]["dce_compact"])
    first, second = results
    assert first["replicas"] == 2 and second["replicas"] == 2
    # One bandit per group in each worker, fed the same all-reduced saliency: identical.
    assert first["T"] == second["T"] and first["mu"] == second["mu"]
    assert _keep(first) == _keep(second)
    # And the same run as on one device (the global batch is split across the workers).
    reference = mirrored["one"]["dce_compact"]
    _assert_bandits_match(reference, first, mu_rtol=1e-4, mu_atol=1e-6)
    assert _keep(first) == _keep(reference)
    _assert_weights_close(reference, first, atol=1e-5)


# --- make_strategy --------------------------------------------------------------
def test_make_strategy_default():
    assert make_strategy() is tf.distribute.get_strategy()
    assert make_strategy(None) is tf.distribute.get_strategy()


def test_make_strategy_unknown_name_and_misplaced_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        make_strategy("horovod")
    with pytest.raises(ValueError, match="logical_cpus is only for name='mirrored'"):
        make_strategy("default", logical_cpus=2)
    with pytest.raises(ValueError, match="tpu is only for name='tpu'"):
        make_strategy("mirrored", tpu="grpc://10.0.0.1:8470")
    with pytest.raises(ValueError, match="logical_cpus must be an int >= 1"):
        make_strategy("mirrored", logical_cpus=0)


def test_make_strategy_tpu_without_a_tpu(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="strategy 'tpu': no TPU could be reached"):
        make_strategy("tpu")


def _multi_worker_error(match):
    if compat.KERAS3:
        with pytest.warns(UserWarning, match="keras-team/keras#20585"):
            with pytest.raises(ValueError, match=match):
                make_strategy("multi_worker")
    else:
        with pytest.raises(ValueError, match=match):
            make_strategy("multi_worker")


def test_make_strategy_multi_worker_without_or_with_bad_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    _multi_worker_error("needs the TF_CONFIG environment variable")
    monkeypatch.setenv("TF_CONFIG", "{cluster: ")
    _multi_worker_error("TF_CONFIG is not valid JSON")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "worker", "index": 0}}))
    _multi_worker_error("no 'cluster'")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}))
    _multi_worker_error("no 'task'")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    _multi_worker_error("is not in its cluster")


def test_logical_cpus_after_tensorflow_initialised():
    tf.constant(1.0) + 1.0  # this process's devices are initialised now
    existing = tf.config.list_logical_devices("CPU")
    # Asking for what is already there is fine ...
    assert configure_logical_cpus(len(existing)) == [d.name for d in existing]
    # ... a different split is too late, and says so.
    with pytest.raises(RuntimeError, match="already initialised its devices"):
        make_strategy("mirrored", logical_cpus=len(existing) + 2)


def test_conversions_keep_synchronized_batch_norm():
    """tf_keras leaves `synchronized` out of BN configs; the rebuilt models keep it."""
    from keras_slim import slimming
    from keras_slim.compat import keras
    from keras_slim.dce.compact import GatedBatchNormalization
    from keras_slim.dce.gates import gate_model, strip_gates

    i = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(i)
    x = keras.layers.BatchNormalization(synchronized=True, name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="r2")(x))
    model = keras.Model(i, keras.layers.Dense(2, name="out")(x))
    gated = gate_model(model, 0.5)
    assert isinstance(gated.get_layer("bn1"), GatedBatchNormalization)
    slim = slimming.slimmable(model)
    for converted in (gated, strip_gates(gated), slim, slimming.strip(slim)):
        assert converted.get_layer("bn1").synchronized
        assert not converted.get_layer("bn2").synchronized
