"""Accuracy of a .keras model or a .tflite file on a dataset split.

    python -m keras_slim.apps.evaluate --model_path=run/after_int8.tflite --dataset=fashion_mnist
"""
from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_model_path_flag("A .keras model or a .tflite file.")
    common.define_dataset_flags()
    flags.DEFINE_string("split", "test", "Split, tfds style (test, train[:5000], ...).")
    flags.DEFINE_integer("take", None, "Only the first N examples.", lower_bound=1)
    common.allow_redefinition()


def main(argv):
    del argv
    common.quiet_logs()
    import numpy as np

    from keras_slim.zoo import data

    model = None
    if not FLAGS.model_path.endswith(".tflite"):
        model = common.load_keras_model(FLAGS.model_path)
    elif FLAGS.dataset not in data.SUPPORTED and FLAGS.image_size is None:
        from keras_slim import export
        # A .tflite's input size: what the images are resized to.
        shape = export.load_interpreter(FLAGS.model_path)[0].get_input_details()[0]["shape"]
        FLAGS.image_size = int(shape[1])
    with common.data_errors():
        x, y = data.numpy_arrays(FLAGS.dataset, FLAGS.split, take=FLAGS.take,
                                 **common.data_kwargs(model))
    if model is None:
        from keras_slim import export
        logits = export.predict(FLAGS.model_path, x)
    else:
        common.check_model_fits(model, common.dataset_info(model))
        logits = model.predict(x, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.asarray(logits).reshape(len(x), -1).argmax(1) == y))
    print(f"{FLAGS.model_path}: accuracy {accuracy:.2%} on {len(x)} examples of "
          f"{FLAGS.dataset} {FLAGS.split}")


launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()
