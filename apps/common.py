"""Flags and helpers shared by the absl apps.

Import this module before TensorFlow: it quiets TF's C++ log noise (Keras progress bars
stay on).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from keras_slim.zoo import data
from keras_slim.zoo import models  # noqa: E402

FLAGS = flags.FLAGS


def define_data_flags():
    flags.DEFINE_enum("dataset", "fashion_mnist", data.SUPPORTED, "Dataset (through tfds; "
                      "Fashion-MNIST also offline from its idx files).")
    flags.DEFINE_string("local_data_dir", None, "Directory with the dataset's idx files "
                        "(default for fashion_mnist: the Debian package's directory).")
    flags.DEFINE_integer("train_take", None, "Use only the first N training examples "
                         "(quick runs).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 128, "Training batch size.", lower_bound=1)
    flags.DEFINE_integer("test_take", None, "Validate on only the first N test examples "
                         "(quick runs).", lower_bound=1)

    def local_dir_fits(values):
        path = values["local_data_dir"]
        if path is None:
            return True
        if values["dataset"] not in ("fashion_mnist", "mnist"):
            raise flags.ValidationError("--local_data_dir holds idx files: only for "
                                        "--dataset=fashion_mnist or mnist.")
        if not os.path.isdir(path):
            raise flags.ValidationError(f"--local_data_dir={path} is not a directory.")
        return True

    flags.register_multi_flags_validator(["dataset", "local_data_dir"], local_dir_fits)


def define_model_flags():
    flags.DEFINE_enum("model", "vgg_small", models.MODEL_NAMES, "Reference model to train.")
    define_training_flags()


def define_training_flags():
    """Optimiser flags of a training phase (and the seed)."""
    flags.DEFINE_float("learning_rate", 0.05, "Peak SGD learning rate (momentum 0.9).",
                       lower_bound=0.0)
    flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant"],
                      "Learning-rate schedule of every training phase.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def define_output_flag(default_prefix):
    flags.DEFINE_string("output_dir", None, f"Directory for everything this run writes "
                        f"(default: runs/{default_prefix}-<time>).")

    def writable(path):
        # Really try: as root, os.access says yes even for /proc.
        if path is None:
            return True
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, ".keras_slim_write_test")
            with open(probe, "w"):
                pass
            os.remove(probe)
            return True
        except OSError:
            return False

    flags.register_validator("output_dir", writable,
                             message="--output_dir is not a writable directory.")


def quiet_logs():
    """TF's Python INFO lines (SavedModel writes, converter chatter) drown the progress
    bars and the table; keep warnings and errors."""
    import tensorflow as tf

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")


def output_dir(prefix):
    import time

    path = FLAGS.output_dir or os.path.join("runs", f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(path, exist_ok=True)
    return path


def train_and_test():
    train, info = data.load(FLAGS.dataset, "train", batch_size=FLAGS.batch_size,
                            local_dir=FLAGS.local_data_dir, take=FLAGS.train_take,
                            seed=FLAGS.seed)
    test, _ = data.load(FLAGS.dataset, "test", batch_size=512, local_dir=FLAGS.local_data_dir,
                        take=FLAGS.test_take)
    return train, test, info


def compile_fn(steps_of_phase):
    """Compile function for a training phase of `steps_of_phase` steps: SGD with
    momentum (network_slimming.default_compile), cosine-decayed over the phase."""
    from keras_slim.compat import keras
    from keras_slim.slimming.pipeline import default_compile

    def compile_model(model):
        lr = FLAGS.learning_rate
        if FLAGS.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, max(steps_of_phase, 1))
        return default_compile(model, lr)
    return compile_model


def define_model_path_flag(help_text="Trained Keras model (.keras) to read."):
    flags.DEFINE_string("model_path", None, help_text)
    flags.mark_flag_as_required("model_path")
    flags.register_validator("model_path", lambda p: p is None or os.path.isfile(p),
                             message="--model_path does not name an existing file.")


def load_keras_model(path):
    """A saved model with every keras-slim layer known; a file Keras cannot read is a
    usage error naming it."""
    from keras_slim.serialization import load_model

    try:
        return load_model(path)
    except ValueError as e:
        raise app.UsageError(f"--model_path={path}: {e}") from None


def allow_redefinition():
    """Let another app in the same process define flags of the same names (its own
    help and defaults replace these), so all apps import and run in one process."""
    for name in list(FLAGS):
        FLAGS[name].allow_override = True


def run_state(out, flag_names):
    """The run's resume state; flags in `flag_names` must not change on resume."""
    from keras_slim.training import resume

    try:
        return resume.RunState(out, {n: FLAGS[n].value for n in flag_names},
                               resume=FLAGS.resume)
    except resume.RunStateError as e:
        raise app.UsageError(str(e)) from None


def save_freq():
    return FLAGS.checkpoint_every_steps or "epoch"


def resumable_fit(model, train, epochs, checkpoint_dir, **kwargs):
    """keras_slim.training.resume.fit with the checkpoint flags."""
    from keras_slim.training import resume

    return resume.fit(model, train, epochs, checkpoint_dir, save_freq=save_freq(),
                      stop_after_steps=FLAGS.stop_after_steps, **kwargs)


def launcher(define_flags, main):
    """An app's entry point: define its flags, parse argv, run main (absl's app.run)."""
    def launch():
        define_flags()
        app.run(main)
    return launch


def run_in_process(app_module, argv):
    """Run an app as `python -m` would, in this process (tests, notebooks): its flags
    defined afresh and parsed from argv (argv[0] is the program name). A usage error
    propagates as app.UsageError instead of exiting."""
    app_module.define_flags()
    FLAGS.unparse_flags()
    rest = FLAGS(list(argv))
    return app_module.main(rest)


def define_checkpoint_flags():
    """Checkpoint / resume flags of the apps that train (see keras_slim/training/resume.py)."""
    flags.DEFINE_integer("checkpoint_every_steps", 100, "Save a checkpoint (weights, "
                         "optimizer, epoch and step; DCE: bandit state) every N training "
                         "steps and at every epoch end; 0: at epoch ends only.",
                         lower_bound=0)
    flags.DEFINE_bool("resume", True, "Rerunning with the same --output_dir continues the "
                      "run found there: finished phases are skipped, an unfinished one "
                      "resumes from its last checkpoint. --noresume starts over.")
    flags.DEFINE_integer("stop_after_steps", None, "Testing: exit (code 3, as if killed) "
                         "after N training steps of this process.", lower_bound=1)


def define_strategy_flags():
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy: default (one device), mirrored (all local "
                      "GPUs, or --logical_cpus CPU devices), multi_worker (TF_CONFIG; "
                      "needs TF_USE_LEGACY_KERAS=1, see keras_slim.training.distribute), tpu.")
    flags.DEFINE_integer("logical_cpus", None, "--strategy=mirrored on a CPU-only machine: "
                         "split the CPU into N logical devices (replicas).", lower_bound=1)
    flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or address "
                        "(default: $TPU_NAME).")


def distribution_scope():
    """The scope of the --strategy the run asked for (models are built and compiled in
    it); a usage error naming the flag if it cannot be set up."""
    from keras_slim.training import distribute

    name = FLAGS.strategy
    if FLAGS.logical_cpus is not None and name != "mirrored":
        raise app.UsageError("--logical_cpus only applies to --strategy=mirrored.")
    if FLAGS.tpu is not None and name != "tpu":
        raise app.UsageError("--tpu only applies to --strategy=tpu.")
    try:
        strategy = distribute.make_strategy(name, logical_cpus=FLAGS.logical_cpus,
                                            tpu=FLAGS.tpu)
    except (ValueError, RuntimeError) as e:
        raise app.UsageError(f"--strategy={name}: {e}") from None
    if strategy.num_replicas_in_sync > 1:
        print(f"--strategy={name}: {strategy.num_replicas_in_sync} replicas in sync; "
              f"--batch_size is the global batch")
    return strategy.scope()
