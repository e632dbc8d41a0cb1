"""tf.distribute for keras_slim: one place that builds the strategy a run asks for.

    strategy = make_strategy("mirrored", logical_cpus=2)   # first thing in the program
    with strategy.scope():
        gated = gate_model(model, 0.5)                       # build and compile in scope
        gated.compile(...)
    gated.fit(dataset, callbacks=[CUCBCallback()])          # a tf.data global batch

Names: "default" / None (tf.distribute.get_strategy(): no distribution), "mirrored"
(MirroredStrategy over the GPUs, or over the CPU's logical devices on a CPU-only machine;
`logical_cpus=N` splits the CPU into N logical devices, which TensorFlow only allows
before it initialises its devices), "multi_worker" (MultiWorkerMirroredStrategy; reads
TF_CONFIG, which must name a worker cluster and this process's task) and "tpu"
(TPUStrategy through TPUClusterResolver; `tpu` names the TPU, else TPU_NAME).

What the library does under a strategy:

- Network Slimming: every replica adds λ·Σ|γ| with add_loss; Keras scales such losses by
  1/replicas (both flavours), so the summed gradient of γ is λ·sign(γ), as on one device.
- Saliency (DCE): each ChannelGate's `saliency` variable has MEAN aggregation. A replica
  assigns it in its backward pass (replica context) with the Taylor saliency of its own
  share of the batch, s_r = mean over its examples of |(1/M) Σ_m dL/dh·h|; the assign
  all-reduces and every replica (and worker) stores the mean over replicas, which for
  equal shares is the mean over the global batch. dL/dh carries 1/global batch on every
  replica (the per-replica loss is scaled by 1/replicas), so the value equals the one
  device value on the same global batch; dce normalises rewards per step anyway.
- CUCBCallback runs on the host between steps (cross-replica context): it writes the
  masks and the compact layers' int32 active indices to every replica, reads the
  aggregated saliency and updates one bandit per group. Under multi_worker every worker
  process runs its own callback; the bandits stay identical because their seeds and
  their rewards (the all-reduced saliency) are. Each worker writes the same bandit
  checkpoint content.
- multi_worker needs tf_keras (TF_USE_LEGACY_KERAS=1): Keras 3's model.fit fails under
  MultiWorkerMirroredStrategy (an upstream bug, keras-team/keras#20585), so
  make_strategy("multi_worker") warns on Keras 3.
- BatchNormalization: batch statistics are per replica and the moving statistics too
  (Keras keeps one copy per replica: mirrored variables written per replica in Keras 3,
  ON_READ/MEAN in tf_keras); compact GatedBatchNormalization keeps whatever variables its
  Keras BN base creates and updates them the same way. With `synchronized=True` a
  GatedBatchNormalization all-reduces its batch moments across replicas, as Keras'
  synchronized BN does (tf_keras leaves `synchronized` out of a layer's config;
  compat.model_from_config puts it back, so gate_model, slimmable and rebuild keep it).
- Use a global batch that splits evenly across the replicas (the saliency mean over
  replicas is the global batch mean only for equal shares).

Tested (tests/test_distribute.py): MirroredStrategy on two logical CPUs against one
device, MultiWorkerMirroredStrategy with two local workers (tf_keras). "tpu" is not
tested on a TPU (none here); only its error without one is.
"""
import json
import os
import warnings

import tensorflow as tf

from keras_slim import compat

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def configure_logical_cpus(count):
    """Split the (first) physical CPU into `count` logical devices; returns their names.

    Must run before TensorFlow initialises its devices (before any op or model). If they
    are already initialised with exactly `count` logical CPUs this is a no-op; otherwise
    a RuntimeError says so.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"logical_cpus must be an int >= 1, got {count!r}.")
    cpus = tf.config.list_physical_devices("CPU")
    if not cpus:
        raise RuntimeError("logical_cpus: TensorFlow sees no physical CPU device.")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as e:
        existing = tf.config.list_logical_devices("CPU")
        if len(existing) == count:
            return [d.name for d in existing]
        raise RuntimeError(
            f"logical_cpus={count}: TensorFlow has already initialised its devices "
            f"({len(existing)} logical CPU(s)), and logical devices can only be "
            "configured before that. Call make_strategy(...) at the start of the program, "
            f"before building a model or running any TensorFlow op ({e}).") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tf_config():
    """TF_CONFIG parsed and checked; a ValueError names what is wrong."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "strategy 'multi_worker' needs the TF_CONFIG environment variable, which is "
            "not set. Set it in every worker process, e.g. TF_CONFIG='{\"cluster\": "
            "{\"worker\": [\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": "
            "\"worker\", \"index\": 0}}'.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no 'cluster' mapping of job names to address "
                         f"lists: {raw!r}.")
    if not any(isinstance(cluster.get(job), list) and cluster.get(job)
               for job in ("worker", "chief")):
        raise ValueError(f"TF_CONFIG's cluster has no 'worker' (or 'chief') address list: "
                         f"{raw!r}.")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG has no 'task' with 'type' and 'index' (which process "
                         f"this is): {raw!r}.")
    addresses = cluster.get(task["type"])
    index = task["index"]
    if not isinstance(addresses, list) or isinstance(index, bool) \
            or not isinstance(index, int) or not 0 <= index < len(addresses):
        raise ValueError(f"TF_CONFIG's task {task!r} is not in its cluster {cluster!r}.")
    return config


def _multi_worker():
    if compat.KERAS3:
        warnings.warn(
            "Keras 3's model.fit does not run under MultiWorkerMirroredStrategy (it fails "
            "reducing PerReplica values: keras-team/keras#20585, tensorflow#72388); run "
            "multi-worker training on tf_keras (TF_USE_LEGACY_KERAS=1) or with a custom "
            "training loop.", stacklevel=3)
    _tf_config()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise RuntimeError(
            "strategy 'multi_worker' could not start: MultiWorkerMirroredStrategy must be "
            "created at the start of the program, before any TensorFlow op or model, in "
            f"every worker of TF_CONFIG ({e}).") from None


def _tpu(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        where = f"tpu={tpu!r}" if tpu else "no tpu= argument, TPU_NAME or local TPU"
        raise RuntimeError(f"strategy 'tpu': no TPU could be reached ({where}): {e}") \
            from None
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(name="default", logical_cpus=None, tpu=None):
    """A tf.distribute.Strategy by name.

    Args:
      name: "default" or None, "mirrored", "multi_worker" or "tpu" (see the module
        docstring).
      logical_cpus: "mirrored" only: split the CPU into this many logical devices and
        mirror over them (tests and CPU-only machines). Must come before TensorFlow
        initialises its devices, else RuntimeError.
      tpu: "tpu" only: the TPU name or grpc:// address for TPUClusterResolver.

    Raises ValueError for an unknown name, misplaced arguments or a missing/invalid
    TF_CONFIG, RuntimeError when the environment cannot provide the strategy.
    """
    if name is None:
        name = "default"
    if name not in STRATEGIES:
        raise ValueError(f"name must be one of {STRATEGIES} (or None), got {name!r}.")
    if logical_cpus is not None and name != "mirrored":
        raise ValueError(f"logical_cpus is only for name='mirrored', got name={name!r}.")
    if tpu is not None and name != "tpu":
        raise ValueError(f"tpu is only for name='tpu', got name={name!r}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return _multi_worker()
    if name == "tpu":
        return _tpu(tpu)
    if logical_cpus is not None:
        return tf.distribute.MirroredStrategy(configure_logical_cpus(logical_cpus))
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    # CPU only: MirroredStrategy() would take CPU:0 alone; mirror over every logical CPU.
    return tf.distribute.MirroredStrategy([d.name for d in
                                           tf.config.list_logical_devices("CPU")])

