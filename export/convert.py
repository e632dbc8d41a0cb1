"""Keras model -> .tflite bytes in one of five precisions, TFLite builtin ops only.

    tflite = convert(model, "int8", representative_data=x_train[:200], output_path="m.tflite")

Modes:
  float32   plain float model.
  float16   float16 weights (dequantized at load or run by fp16 kernels), float32 I/O.
  dynamic   int8 weights, activations quantized on the fly; float32 I/O.
  int8      full integer: int8 weights, activations, input and output. Needs
            representative data (calibration), except for QAT models (see export.qat).
  int16x8   int16 activations, int8 weights; float32 I/O. Needs representative data.

Only TFLite builtin ops are allowed: Flex (select TF ops) need the TensorFlow runtime,
which a phone with plain LiteRT does not have, so such a model fails here, naming the op.
"""
import contextlib
import io
import re

import numpy as np
import tensorflow as tf

from keras_slim.compat import ensure_model
from keras_slim.export.errors import ExportError, check_output_path, write_bytes

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
NEEDS_CALIBRATION = ("int8", "int16x8")


def convert(model, mode="float32", representative_data=None, output_path=None, metadata=None):
    """Convert `model` to TFLite; return the bytes, and write them to `output_path` if given.

    representative_data (int8 / int16x8): a zero-argument callable yielding lists [x]
    (one array per model input, with a batch axis), or an array of samples shaped
    (N, *input_shape), or a list of such arrays for a multi-input model.
    metadata: a JSON-able dict embedded in the file (see export.metadata).
    """
    ensure_model(model)
    if mode not in MODES:
        raise ExportError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if output_path is not None:
        check_output_path(output_path)
    input_shapes = _input_shapes(model)
    samples = None
    if representative_data is not None:
        if mode not in NEEDS_CALIBRATION:
            raise ExportError(f"representative_data is only used by modes "
                              f"{' and '.join(NEEDS_CALIBRATION)}, not {mode!r}.")
        samples = _calibration_samples(representative_data, input_shapes)
    elif mode in NEEDS_CALIBRATION and not (mode == "int8" and is_qat_model(model)):
        raise ExportError(f"mode {mode!r} needs representative_data (a callable yielding "
                          f"[x] lists or an array of samples) to calibrate activations.")
    if metadata is not None:
        from keras_slim.export.metadata import check_metadata
        check_metadata(metadata)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    _configure(converter, mode, samples)
    content = _run_converter(converter, model, mode)
    if metadata is not None:
        from keras_slim.export.metadata import add_metadata
        content = add_metadata(content, metadata)
    if output_path is not None:
        write_bytes(output_path, content)
    return content


def is_qat_model(model):
    """True for a tfmot quantize_model() result, whose fake-quant ranges replace calibration."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
               for layer in model.layers)


def _input_shapes(model):
    """Per model input, its shape without the batch axis; a model without one is refused."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ExportError(
            f"model {model.name!r} has no defined input shape; start it with "
            "keras.Input(shape=...) or call model.build((None, ...)) before exporting.")
    shapes = []
    for tensor in inputs:
        shape = tuple(tensor.shape)[1:]
        if any(d is None for d in shape):
            raise ExportError(f"model {model.name!r} input {tensor.name!r} has shape "
                              f"{(None,) + shape}; only the batch axis may be unknown.")
        shapes.append(tuple(int(d) for d in shape))
    return shapes


def _calibration_samples(data, input_shapes):
    """All calibration samples as lists of float32 arrays, checked once up front: an
    error raised inside the converter's calibration loop would surface as a deep trace."""
    if callable(data):
        try:
            items = list(data())
        except TypeError as e:
            raise ExportError("representative_data must be a zero-argument callable "
                              f"returning an iterable of [x] lists ({e}).") from None
    elif isinstance(data, (np.ndarray, tf.Tensor)) or (
            isinstance(data, (list, tuple)) and data and hasattr(data[0], "shape")
            and len(input_shapes) > 1):
        arrays = [np.asarray(data)] if len(input_shapes) == 1 else [np.asarray(a) for a in data]
        for a, shape in zip(arrays, input_shapes):
            if a.ndim != len(shape) + 1:
                raise ExportError(f"representative_data has shape {a.shape}; expected "
                                  f"(num_samples, {', '.join(map(str, shape))}).")
        items = [[a[i:i + 1] for a in arrays] for i in range(len(arrays[0]))]
    else:
        raise ExportError("representative_data must be a zero-argument callable yielding "
                          f"[x] lists or an array of samples, got {type(data).__name__}.")
    if not items:
        raise ExportError("representative_data is empty; int8/int16x8 calibration needs "
                          "at least one sample (a few hundred is typical).")
    samples = []
    for n, item in enumerate(items):
        if not isinstance(item, (list, tuple)):
            item = [item]  # a bare array for a single-input model
        if len(item) != len(input_shapes):
            raise ExportError(f"representative_data sample {n} has {len(item)} arrays; "
                              f"the model has {len(input_shapes)} input(s).")
        arrays = []
        for x, shape in zip(item, input_shapes):
            x = np.asarray(x, dtype=np.float32)
            if x.ndim == len(shape):
                x = x[None]  # a sample without its batch axis
            if x.shape[1:] != shape:
                raise ExportError(
                    f"representative_data sample {n} has shape {x.shape}; the model expects "
                    f"(batch, {', '.join(map(str, shape))}).")
            arrays.append(x)
        samples.append(arrays)
    return samples


def _configure(converter, mode, samples):
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins]
    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if samples is not None:
        converter.representative_dataset = lambda: iter(samples)
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        # Without calibration data (QAT model) the fake-quant ranges are used and the
        # int8-only op set would demand a representative dataset, so keep builtins.
        if samples is not None:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


# Converter messages that name ops without a TFLite builtin kernel.
_OP_LISTS = (r"TF Select ops: ([^\n]+)", r"Custom ops: ([^\n]+)")
_OP_SINGLE = r"'tf\.(\w+)' op is neither a custom op nor a flex op"


def unsupported_ops(message):
    """TF op names the converter could not map to builtins, parsed from its message."""
    ops = []
    for pattern in _OP_LISTS:
        for match in re.findall(pattern, message):
            ops += [o.strip() for o in match.split(",") if o.strip()]
    ops += re.findall(_OP_SINGLE, message)
    return list(dict.fromkeys(ops))


def _op_location(message, op):
    """The TF node path of `op`, e.g. 'functional/my_layer/MatrixDeterminant'."""
    match = re.search(r'fused\["%s:", "([^"@]+)' % re.escape(op), message)
    return match.group(1) if match else None


def _layers_using(model, ops):
    """Names of the layers whose TF graph contains any of `ops`; tf_keras' converter
    messages point at Python source lines instead, so we look ourselves. Best effort:
    a layer that cannot be traced on its own is skipped."""
    from keras_slim.core.walk import iter_layers

    wanted, found = set(ops), []
    for name, layer in iter_layers(model):
        try:
            specs = tf.nest.map_structure(
                lambda t: tf.TensorSpec(t.shape, t.dtype), layer.input)
            graph = tf.function(lambda x: layer(x)).get_concrete_function(specs).graph
            graph_def = graph.as_graph_def()
        except Exception:  # noqa: BLE001 - only improves a message
            continue
        nodes = list(graph_def.node) + [n for f in graph_def.library.function
                                        for n in f.node_def]
        if wanted & {n.op for n in nodes}:
            found.append(f"layer {name!r}")
    return found


def _run_converter(converter, model, mode):
    try:
        # Keras 3's export path prints "Saved artifact at ..." on stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as e:  # ConverterError and friends: replace the deep trace
        message = str(e)
        ops = unsupported_ops(message)
        if ops:
            where = _layers_using(model, ops) or [
                w for w in (_op_location(message, op) for op in ops) if w]
            raise ExportError(
                f"model {model.name!r} cannot be exported ({mode}) with TFLite builtin ops "
                f"only: op(s) {', '.join(ops)} have no builtin kernel and would need Flex "
                "(select TF ops), which plain LiteRT on phones does not run"
                + (f" (in {', '.join(where)})" if where else "")
                + ". Replace the layer that uses them.") from None
        errors = [line.split("error:", 1)[1].strip() for line in message.splitlines()
                  if "error:" in line]
        summary = errors[-1] if errors else (message.strip().splitlines() or [repr(e)])[-1]
        raise ExportError(f"TFLite conversion of model {model.name!r} ({mode}) failed: "
                          f"{summary[:500]}") from None
