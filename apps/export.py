"""Export a .keras model to a verified .tflite file for phones.

    python -m keras_slim.apps.export --model_path=run/after.keras --mode=int8 --output=run/model.tflite
"""
from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_model_path_flag()
    flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8", "int16x8"],
                      "Conversion mode (int8: full integer, int8 input and output).")
    common.define_dataset_flags()  # calibration, verification and the metadata
    flags.DEFINE_integer("representative_samples", 200, "Training images for int8 calibration.",
                         lower_bound=1)
    flags.DEFINE_integer("eval_samples", 1000, "Test images for the agreement check.",
                         lower_bound=1)
    flags.DEFINE_string("plan", None, "plan.json to summarise in the file's metadata.")
    flags.DEFINE_string("output", None, "Path of the .tflite file to write.")
    flags.mark_flag_as_required("output")
    flags.register_validator("plan", lambda p: p is None or __import__("os").path.isfile(p),
                             message="--plan does not name an existing file.")
    common.allow_redefinition()


def main(argv):
    del argv
    common.quiet_logs()
    from keras_slim import export
    from keras_slim.zoo import data
    from keras_slim.core.plan import ChannelPlan

    model = common.load_keras_model(FLAGS.model_path)
    info = common.dataset_info(model)
    common.check_model_fits(model, info)
    kwargs = common.data_kwargs(model)
    calibration = None
    with common.data_errors():
        if FLAGS.mode in ("int8", "int16x8"):
            calibration = common.with_progress(data.representative_dataset(
                FLAGS.dataset, FLAGS.representative_samples, **kwargs),
                FLAGS.representative_samples)
        x, y = data.numpy_arrays(FLAGS.dataset, "test", take=FLAGS.eval_samples, **kwargs)
    plan = ChannelPlan.load(FLAGS.plan) if FLAGS.plan else None
    meta = export.build_metadata(dataset=info, plan=plan)
    export.convert(model, FLAGS.mode, representative_data=calibration,
                   output_path=FLAGS.output, metadata=meta)
    report = export.verify(FLAGS.output, keras_model=model, x=x, y=y)
    print(f"{FLAGS.output}: {report['size_bytes'] / 1024:.1f} KB, {FLAGS.mode}, ops "
          f"{', '.join(report['ops'])}")
    print(f"top-1 agreement with Keras {report['agreement']:.2%}; accuracy "
          f"{report['accuracy']:.2%} (Keras {report['keras_accuracy']:.2%}) on "
          f"{report['num_samples']} test images")


launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()
