"""Quantization-aware training with tensorflow-model-optimization, then int8 export.

    qat = qat_finetune(model, train_ds, epochs=1)      # needs TF_USE_LEGACY_KERAS=1
    tflite = convert(qat, "int8")                      # fake-quant ranges, no calibration

tfmot wraps tf_keras layers only; on Keras 3 we refuse up front with the fix, rather
than let tfmot fail deep inside its model cloning.
"""
from keras_slim.compat import LEGACY_KERAS, ensure_model, is_graph_model, keras
from keras_slim.export.errors import ExportError

_NEEDS_TF_KERAS = (
    "quantization-aware training uses tensorflow-model-optimization, which supports "
    "tf_keras (Keras 2) models only, but keras_slim is running on Keras 3. Re-run with "
    "the environment variable TF_USE_LEGACY_KERAS=1 (set before TensorFlow is imported), "
    "or use post-training quantization: export.convert(model, 'int8', representative_data).")


def _tfmot():
    if not LEGACY_KERAS:
        raise ExportError(_NEEDS_TF_KERAS)
    try:  # imported lazily: it is slow and pulls in tf_keras
        import tensorflow_model_optimization as tfmot
    except ImportError as e:
        raise ImportError("quantization-aware training needs the package "
                          f"tensorflow-model-optimization ({e}).") from None
    return tfmot


def quantize_aware(model):
    """A copy of `model` with fake-quant wrappers (tfmot quantize_model), weights kept."""
    tfmot = _tfmot()
    ensure_model(model)
    if not is_graph_model(model):
        raise ExportError(f"model {model.name!r} is a subclassed model; quantization-aware "
                          "training needs a Sequential or functional model.")
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (ValueError, RuntimeError, TypeError, KeyError) as e:
        raise ExportError(f"tfmot cannot quantize model {model.name!r}: "
                          f"{str(e).strip().splitlines()[0][:300]}") from None


def qat_finetune(model, dataset, epochs=1, learning_rate=1e-4, steps_per_epoch=None,
                 loss=None, metrics=("accuracy",), validation_data=None, verbose=0):
    """quantize_aware(model), compiled with Adam and fine-tuned on `dataset` (a tf.data
    dataset of (x, y) batches, or an (x, y) tuple of arrays). Returns the QAT model.

    The default loss is sparse categorical cross-entropy, from logits unless the model's
    last layer applies a softmax.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ExportError(f"epochs must be a positive integer, got {epochs!r}.")
    qat = quantize_aware(model)
    if loss is None:
        last = model.layers[-1]
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=activation != "softmax")
    qat.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                metrics=list(metrics))
    if isinstance(dataset, tuple) and len(dataset) == 2:
        qat.fit(dataset[0], dataset[1], epochs=epochs, batch_size=32,
                steps_per_epoch=steps_per_epoch, validation_data=validation_data,
                verbose=verbose)
    else:
        qat.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
                validation_data=validation_data, verbose=verbose)
    return qat
