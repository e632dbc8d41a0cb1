"""Flags and helpers shared by the absl apps.

Import this module before TensorFlow: it quiets TF's C++ log noise (Keras progress bars
stay on).
"""
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from keras_slim.zoo import applications, data, models, sources  # noqa: E402

FLAGS = flags.FLAGS


def define_dataset_flags():
    """--dataset and how to read it: the flags of every app that reads data."""
    flags.DEFINE_string("dataset", "fashion_mnist", "Dataset: a built-in name ("
                        f"{', '.join(data.SUPPORTED)}; Fashion-MNIST also offline from its "
                        "idx files), folder:PATH (one sub-folder of images per class), "
                        "tfrecord:GLOB ((image, label) examples, see "
                        "keras_slim.zoo.sources) or any tensorflow_datasets name.")
    flags.DEFINE_string("local_data_dir", None, "Directory with the dataset's idx files "
                        "(default for fashion_mnist: the Debian package's directory).")
    flags.DEFINE_integer("image_size", None, "folder:/tfrecord:/tfds datasets: resize "
                         "images to this height and width (default: the model's input "
                         f"size, else {sources.DEFAULT_IMAGE_SIZE}).", lower_bound=8)
    flags.DEFINE_float("validation_split", 0.2, "folder:/tfrecord: share of the images "
                       "held out as the test split.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("split_seed", 0, "folder: seed of the random train/test split of "
                         "the files (keep it when you rerun or resume).")

    def dataset_known(name):
        if name in data.SUPPORTED:
            return True
        if name.startswith(sources.FOLDER):
            if not os.path.isdir(name[len(sources.FOLDER):]):
                raise flags.ValidationError(f"--dataset={name}: no such directory.")
            return True
        if name.startswith(sources.TFRECORD) or _is_tfds_name(name):
            return True
        raise flags.ValidationError(
            f"--dataset={name} is not a built-in dataset ({', '.join(data.SUPPORTED)}), "
            f"not a tensorflow_datasets name and not folder:PATH or tfrecord:GLOB.")

    flags.register_validator("dataset", dataset_known)

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


def _is_tfds_name(name):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return False
    return name.split(":")[0].split("/")[0] in tfds.list_builders(with_community_datasets=False)


def define_data_flags():
    define_dataset_flags()
    flags.DEFINE_integer("train_take", None, "Use only the first N training examples "
                         "(quick runs).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 128, "Training batch size.", lower_bound=1)
    flags.DEFINE_integer("test_take", None, "Validate on only the first N test examples "
                         "(quick runs).", lower_bound=1)


@contextlib.contextmanager
def data_errors():
    """Data that cannot be read (a corrupt image, an empty class folder, no network) is a
    usage error naming --dataset."""
    try:
        yield
    except (ValueError, FileNotFoundError, data.DatasetUnavailableError) as e:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {e}") from None


def data_kwargs(model=None):
    """How keras_slim.zoo.data reads --dataset: the idx directory of the built-in sets;
    size, channels and split of the other sources (size and channels default to
    `model`'s input)."""
    if FLAGS.dataset in data.SUPPORTED:
        if FLAGS.image_size is not None:
            raise app.UsageError(f"--image_size applies to folder:, tfrecord: and tfds "
                                 f"datasets; --dataset={FLAGS.dataset} has a fixed size "
                                 f"{data.info(FLAGS.dataset).input_shape[:2]}.")
        return {"local_dir": FLAGS.local_data_dir}
    size, channels = FLAGS.image_size, 3
    if model is not None:
        shape = tuple(model.input_shape[1:])
        channels = shape[-1] or 3
        if size is None and None not in shape[:2]:
            size = shape[:2]
    return {"image_size": size, "channels": channels,
            "validation_split": FLAGS.validation_split, "split_seed": FLAGS.split_seed}


def dataset_info(model=None):
    with data_errors():
        return data.info(FLAGS.dataset, **{k: v for k, v in data_kwargs(model).items()
                                           if k not in ("local_dir", "split_seed")})


def check_model_fits(model, info, flag="model_path"):
    """The model takes the dataset's images and outputs its classes, or a usage error
    naming the flags to change."""
    shape, want = tuple(model.input_shape[1:]), tuple(info.input_shape)
    if len(shape) != len(want) or any(s not in (None, w) for s, w in zip(shape, want)):
        size_hint = ("" if FLAGS.dataset in data.SUPPORTED else
                     f" (--image_size={FLAGS.image_size})" if FLAGS.image_size
                     else "; --image_size resizes the images")
        raise app.UsageError(f"--{flag}={FLAGS[flag].value} takes inputs of shape {shape}, "
                             f"--dataset={FLAGS.dataset} has {want}{size_hint}.")
    classes = model.output_shape[-1]
    if classes != info.num_classes:
        raise app.UsageError(f"--{flag}={FLAGS[flag].value} outputs {classes} classes, "
                             f"--dataset={FLAGS.dataset} has {info.num_classes}; pass "
                             f"--replace_head for a new classifier head.")


def define_model_flags():
    """Where the model to train comes from: --model (reference net or
    keras.applications.NAME with --weights) or --model_path (a saved model)."""
    flags.DEFINE_string("model", "vgg_small", f"Model to build: a reference net "
                        f"({', '.join(models.MODEL_NAMES)}) or keras.applications.NAME "
                        f"(e.g. keras.applications.MobileNetV2; --weights).")
    flags.DEFINE_string("weights", None, "keras.applications models: imagenet (default; "
                        "downloads once), none (random init) or the path of a weights file.")
    define_model_path_flag("Start from this saved Keras model (.keras, SavedModel or H5) "
                           "instead of building --model.", required=False)
    define_head_flag()
    define_training_flags()

    def model_known(name):
        if name in models.MODEL_NAMES or name.startswith(applications.APPLICATION_PREFIX):
            return True
        raise flags.ValidationError(f"--model={name} is neither a reference net "
                                    f"({', '.join(models.MODEL_NAMES)}) nor "
                                    f"keras.applications.NAME.")

    flags.register_validator("model", model_known)


def define_normalizer_flag():
    flags.DEFINE_enum("normalizer", "none", ["none", "mean"],
                      "With one global ranking, mean: rank each channel's score against its "
                      "own layer's mean (the |γ| of a model trained without the L1 term, "
                      "e.g. --pretrained --fade, differ in scale from layer to layer).")


def normalizer():
    """--normalizer as the plan's argument (None for 'none')."""
    return None if FLAGS.normalizer == "none" else FLAGS.normalizer


def define_head_flag():
    flags.DEFINE_bool("replace_head", False, "Replace the model's classifier by a new "
                      "Dense layer for the dataset's class count (e.g. an ImageNet model "
                      "fine-tuned on your classes).")


def build_or_load_model(info, loaded=None):
    """--model_path (`loaded`, if the caller read it already), or --model built for the
    dataset (--weights); --replace_head applied; checked against the dataset."""
    if FLAGS.model_path:
        flag = "model_path"
        model = loaded if loaded is not None else load_keras_model(FLAGS.model_path)
    elif FLAGS.model.startswith(applications.APPLICATION_PREFIX):
        flag = "model"
        try:
            model = applications.application(FLAGS.model, info.input_shape,
                                             info.num_classes, FLAGS.weights or "imagenet")
        except applications.WeightsUnavailableError as e:
            raise app.UsageError(f"--weights={FLAGS.weights or 'imagenet'}: {e}") from None
        except ValueError as e:
            raise app.UsageError(f"--model={FLAGS.model} --weights={FLAGS.weights}: {e}") \
                from None
    else:
        if FLAGS.weights not in (None, "none"):
            raise app.UsageError(f"--weights applies to keras.applications models; "
                                 f"--model={FLAGS.model} starts from random weights "
                                 f"(use --model_path for a trained one).")
        flag = "model"
        model = models.build(FLAGS.model, input_shape=info.input_shape,
                             num_classes=info.num_classes)
    if FLAGS.replace_head:
        model = applications.replace_head(model, info.num_classes)
    check_model_fits(model, info, flag)
    return model


def model_and_data():
    """(model, train, test, info) of the apps that train: a saved model first (its input
    size sizes the images), a built one after the data."""
    loaded = load_keras_model(FLAGS.model_path) if FLAGS.model_path else None
    train, test, info = train_and_test(loaded)
    return build_or_load_model(info, loaded), train, test, info


def define_distill_flags(default):
    """Distillation fine-tuning (keras_slim.training.distillation)."""
    flags.DEFINE_bool("distill", default, "Fine-tune by distillation: the pruned model "
                      "learns from the labels and from the unpruned model's logits.")
    flags.DEFINE_float("temperature", 4.0, "Distillation temperature T (softens both "
                       "models' logits).", lower_bound=1e-6)
    flags.DEFINE_float("alpha", 0.5, "Weight of the teacher term; 1 - alpha weighs the "
                       "labels' loss.", lower_bound=0.0, upper_bound=1.0)


def distiller(student, teacher, flag):
    """The --distill trainer of `student`; a teacher of other classes is a usage error."""
    from keras_slim.training import distillation

    try:
        return distillation.distiller(student, teacher, FLAGS.temperature, FLAGS.alpha)
    except ValueError as e:
        raise app.UsageError(f"--{flag}: {e}") from None


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


def train_and_test(model=None):
    """The train and test splits of --dataset (images sized for `model` if given)."""
    with data_errors():
        kwargs = data_kwargs(model)
        train, info = data.load(FLAGS.dataset, "train", batch_size=FLAGS.batch_size,
                                take=FLAGS.train_take, seed=FLAGS.seed, **kwargs)
        test, _ = data.load(FLAGS.dataset, "test", batch_size=512, take=FLAGS.test_take,
                            **kwargs)
    return train, test, info


def fit_verbose():
    """Keras progress bars in a terminal; one line per epoch into a log file or pipe."""
    return 1 if sys.stdout.isatty() else 2


def with_progress(calibration, total, what="calibration"):
    """A representative-data generator function that ticks a Keras Progbar."""
    from keras_slim.compat import keras

    def generator():
        bar = keras.utils.Progbar(total, verbose=fit_verbose(), unit_name=what)
        for i, sample in enumerate(calibration(), 1):
            yield sample
            bar.update(i)
    return generator


def compile_fn(steps_of_phase, learning_rate=None):
    """Compile function for a training phase of `steps_of_phase` steps: SGD with
    momentum (network_slimming.default_compile) at `learning_rate` (None:
    --learning_rate), cosine-decayed over the phase."""
    from keras_slim.compat import keras
    from keras_slim.slimming.pipeline import default_compile

    def compile_model(model):
        lr = FLAGS.learning_rate if learning_rate is None else learning_rate
        if FLAGS.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, max(steps_of_phase, 1))
        return default_compile(model, lr)
    return compile_model


def define_model_path_flag(help_text="Trained Keras model (.keras, SavedModel directory "
                                     "or .h5) to read.", required=True):
    flags.DEFINE_string("model_path", None, help_text)
    if required:
        flags.mark_flag_as_required("model_path")
    flags.register_validator("model_path", lambda p: p is None or os.path.exists(p),
                             message="--model_path does not name an existing file or "
                                     "SavedModel directory.")
    flags.DEFINE_string("custom_objects", None, "Python module with the custom layers, "
                        "losses, ... the model file references (its `custom_objects` "
                        "dict, else its public classes and functions).")


def load_keras_model(path, flag="model_path"):
    """A saved model with every keras-slim layer (and --custom_objects) known; a file
    Keras cannot read is a usage error naming it."""
    from keras_slim.serialization import load_model

    objects = None
    module = FLAGS["custom_objects"].value if "custom_objects" in FLAGS else None
    if module:
        try:
            objects = applications.custom_objects_from(module)
        except ValueError as e:
            raise app.UsageError(f"--custom_objects={module}: {e}") from None
    try:
        return load_model(path, custom_objects=objects)
    except ValueError as e:
        raise app.UsageError(f"--{flag}={path}: {e}") from None


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

    kwargs.setdefault("verbose", fit_verbose())
    return resume.fit(model, train, epochs, checkpoint_dir, save_freq=save_freq(),
                      stop_after_steps=FLAGS.stop_after_steps, **kwargs)


def in_strategy_scope(run):
    """An app's main that runs `run(argv)` inside the --strategy distribution scope."""
    def main(argv):
        with distribution_scope():
            return run(argv)
    return main


def launcher(define_flags, main):
    """An app's entry point: define its flags, parse argv, run main (absl's app.run)."""
    def launch():
        define_flags()
        app.run(main)
    return launch


_ABSL_FLAGS = set(FLAGS)  # absl's own (--flagfile, --verbosity, ...): every app keeps them


def run_in_process(app_module, argv):
    """Run an app as `python -m` would, in this process (tests, notebooks): its flags
    defined afresh and parsed from argv (argv[0] is the program name). A usage error
    propagates as app.UsageError instead of exiting. Flags an earlier app defined are
    removed first, so their validators (required flags) do not apply to this one."""
    for name in set(FLAGS) - _ABSL_FLAGS:
        delattr(FLAGS, name)
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
