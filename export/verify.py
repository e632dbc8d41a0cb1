"""Check a .tflite the way a phone would run it: LiteRT only, no Flex delegate.

    report = verify("m.tflite", keras_model=model, x=x_test, y=y_test)
    report["ops"], report["inputs"][0]["dtype"], report["agreement"], report["accuracy"]
"""
import collections

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from keras_slim.export.errors import ExportError
from keras_slim.export.flatbuffer import custom_op_names, op_names, parse, read_bytes


def load_interpreter(tflite, num_threads=None, argument="tflite", xnnpack=True):
    """(Interpreter with tensors allocated, content bytes, label) for a path or bytes.

    ai_edge_litert has no Flex delegate linked in, so a model with select-TF ops fails
    here; we name those ops instead of passing on the runtime's message. xnnpack=False
    runs LiteRT's builtin kernels without its default XNNPACK delegate.
    """
    content, label = read_bytes(tflite, argument)
    model = parse(content, label)
    flex = [op for op in custom_op_names(model) if op.startswith("Flex")]
    if flex:
        raise ExportError(f"{label} uses Flex (select TF) ops {', '.join(flex)}, which plain "
                          "LiteRT does not run; re-export with builtin ops only.")
    try:
        resolver = {} if xnnpack else {"experimental_op_resolver_type":
                                       OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        interpreter = Interpreter(model_content=content, num_threads=num_threads, **resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"LiteRT cannot load {label}: {str(e).strip()[:500]}") from None
    return interpreter, content, label


def _tensor_info(detail):
    scale, zero_point = detail["quantization"]
    return {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale), "zero_point": int(zero_point),
            "quantized": bool(scale)}


def quantize_input(x, detail):
    """float -> the tensor's dtype with the file's own scale / zero point."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f":
        return np.asarray(x, dtype=dtype)
    if not scale:
        raise ExportError(f"input {detail['name']!r} is {dtype.name} without quantization "
                          "parameters; cannot feed float data.")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q, detail):
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return np.asarray(q, np.float32)
    return (q.astype(np.float32) - zero_point) * scale


def run(interpreter, x, batch_size=64):
    """Float outputs (first output) for float inputs x (N, ...); quantized I/O handled."""
    inp = interpreter.get_input_details()
    if len(inp) != 1:
        raise ExportError(f"run() handles single-input models; this one has {len(inp)} inputs.")
    inp = inp[0]
    x = np.asarray(x)
    expected = tuple(int(d) for d in inp["shape"][1:])
    if x.shape[1:] != expected:
        raise ExportError(f"x has shape {x.shape}; the model expects (N, "
                          f"{', '.join(map(str, expected))}).")
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        if int(interpreter.get_input_details()[0]["shape"][0]) != len(chunk):
            interpreter.resize_tensor_input(inp["index"], (len(chunk),) + expected)
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], quantize_input(chunk, inp))
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        outputs.append(dequantize_output(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(outputs)


def predict(tflite, x, batch_size=64):
    """Float outputs of a .tflite (path or bytes) for float inputs x."""
    interpreter, _, _ = load_interpreter(tflite)
    return run(interpreter, x, batch_size)


def verify(tflite, keras_model=None, x=None, y=None, num_random=16, seed=0):
    """Report on a .tflite: it loads in LiteRT, its ops, I/O dtypes and quantization,
    top-1 agreement with `keras_model` and accuracy on (x, y).

    Without x, agreement and max_abs_diff are measured on `num_random` standard-normal
    inputs (a smoke test; pass real data for a meaningful agreement).
    """
    interpreter, content, label = load_interpreter(tflite)
    ops = op_names(parse(content, label))
    report = {
        "file": label, "size_bytes": len(content),
        "ops": sorted(set(ops)), "op_counts": dict(collections.Counter(ops)),
        "inputs": [_tensor_info(d) for d in interpreter.get_input_details()],
        "outputs": [_tensor_info(d) for d in interpreter.get_output_details()],
        "agreement": None, "accuracy": None, "keras_accuracy": None,
        "max_abs_diff": None, "num_samples": 0, "data": None,
    }
    from keras_slim.export.metadata import read_metadata
    report["metadata"] = read_metadata(content)
    if y is not None and x is None:
        raise ExportError("y given without x; pass the inputs the labels belong to.")
    if x is None and keras_model is None:
        return report
    if x is None:
        shape = tuple(report["inputs"][0]["shape"][1:])
        x = np.random.default_rng(seed).standard_normal((num_random,) + shape).astype(np.float32)
        report["data"] = "random"
    else:
        report["data"] = "given"
    x = np.asarray(x, np.float32)
    if y is not None and len(y) != len(x):
        raise ExportError(f"x has {len(x)} samples but y has {len(y)}.")
    lite = run(interpreter, x)
    report["num_samples"] = len(x)
    lite_top1 = lite.reshape(len(x), -1).argmax(axis=1)
    if keras_model is not None:
        ref = np.asarray(keras_model.predict(x, batch_size=256, verbose=0), np.float32)
        if ref.shape != lite.shape:
            raise ExportError(f"keras_model outputs shape {ref.shape} but {label} outputs "
                              f"{lite.shape}; is it the model the file was made from?")
        ref_top1 = ref.reshape(len(x), -1).argmax(axis=1)
        report["agreement"] = float(np.mean(ref_top1 == lite_top1))
        report["max_abs_diff"] = float(np.max(np.abs(ref - lite)))
        if y is not None:
            report["keras_accuracy"] = float(np.mean(ref_top1 == np.ravel(y)))
    if y is not None:
        report["accuracy"] = float(np.mean(lite_top1 == np.ravel(y)))
    return report
