"""Reading .tflite files: bytes from a path or bytes, the model flatbuffer, its op names.

LiteRT's own generated schema is used (it ships with ai_edge_litert), so reading a file
needs neither TensorFlow nor an interpreter.
"""
import os

from ai_edge_litert import schema_py_generated as schema

from keras_slim.export.errors import ExportError

# BuiltinOperator code -> name, e.g. 3 -> "CONV_2D".
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                  if not k.startswith("_") and isinstance(v, int)}


def read_bytes(path_or_bytes, argument="tflite"):
    """(content bytes, label for messages) of a .tflite given as a path or as bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), f"{argument} (in-memory bytes)"
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a .tflite path or bytes, "
                        f"got {type(path_or_bytes).__name__}.")
    path = os.fspath(path_or_bytes)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{argument}: no such file {path!r}.")
    with open(path, "rb") as f:
        return f.read(), repr(path)


def parse(content, label):
    """The root Model table; a clear error when `content` is not a TFLite flatbuffer."""
    # The identifier check comes first: handing garbage to the interpreter can crash it.
    if len(content) < 8 or not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise ExportError(f"{label} is not a TFLite model (no 'TFL3' flatbuffer identifier).")
    try:
        model = schema.Model.GetRootAs(content, 0)
        # Walk the tables we read later so a truncated file fails here, not there.
        op_names(model)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            entry.Name(), model.Buffers(entry.Buffer()).DataLength()
    except Exception:  # flatbuffers raises assorted errors on corrupt offsets
        raise ExportError(f"{label} is a corrupt TFLite model: its flatbuffer is "
                          "truncated or damaged.") from None
    return model


def _op_code_name(code):
    if code.CustomCode() is not None:
        return code.CustomCode().decode("utf-8", "replace")
    # Codes >= 127 live only in BuiltinCode; older files only fill the deprecated field.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def op_names(model):
    """Operator names of all subgraphs in execution order, e.g. ["CONV_2D", ...]."""
    codes = [_op_code_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for i in range(subgraph.OperatorsLength()):
            names.append(codes[subgraph.Operators(i).OpcodeIndex()])
    return names


def custom_op_names(model):
    """Names of custom ops (Flex ops are custom ops called "Flex<TFOpName>")."""
    names = []
    for i in range(model.OperatorCodesLength()):
        custom = model.OperatorCodes(i).CustomCode()
        if custom is not None:
            names.append(custom.decode("utf-8", "replace"))
    return names
