"""JSON metadata inside a .tflite: label names, input normalisation, channel plan summary.

The TFLite flatbuffer has a `metadata` list of (name, buffer index) entries, which
interpreters ignore; we add one named "keras_slim" whose buffer holds UTF-8 JSON. This
needs no tflite_support (its metadata schema and writers are not installable here).
"""
import json

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from keras_slim.export.errors import ExportError, write_bytes
from keras_slim.export.flatbuffer import parse, read_bytes

METADATA_NAME = "keras_slim"
# Metadata is for a few labels and numbers, not data; keep files lean.
MAX_METADATA_BYTES = 1 << 20


def check_metadata(metadata):
    """The JSON bytes of `metadata`, or a clear error when it is not a JSON-able dict."""
    if not isinstance(metadata, dict):
        raise ExportError(f"metadata must be a dict, got {type(metadata).__name__}.")
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ExportError(f"metadata is not JSON-serialisable: {e}.") from None
    data = text.encode("utf-8")
    if len(data) > MAX_METADATA_BYTES:
        raise ExportError(f"metadata is {len(data)} bytes as JSON; the limit is "
                          f"{MAX_METADATA_BYTES}. Store a summary, not the data.")
    return data


def build_metadata(label_names=None, mean=None, std=None, plan=None, dataset=None, **extra):
    """The metadata dict for convert(..., metadata=...).

    dataset: a keras_slim.zoo.data dataset name or DatasetInfo (e.g. of folder:PATH);
        fills label_names/mean/std not given.
    plan: a keras_slim ChannelPlan (summarised) or any small JSON-able dict.
    """
    if dataset is not None:
        from keras_slim.zoo.data import info
        spec = info(dataset)
        label_names = spec.label_names if label_names is None else label_names
        mean = spec.mean if mean is None else mean
        std = spec.std if std is None else std
        extra.setdefault("dataset", spec.name)
    out = dict(extra)
    if label_names is not None:
        out["label_names"] = [str(n) for n in label_names]
    if mean is not None or std is not None:
        # x_model = (x_pixel / 255 - mean) / std, per channel.
        out["normalization"] = {"mean": [float(m) for m in np.ravel(mean)],
                                "std": [float(s) for s in np.ravel(std)],
                                "pixel_scale": 1 / 255}
    if plan is not None:
        out["channel_plan"] = plan_summary(plan) if hasattr(plan, "groups") else plan
    return out


def plan_summary(plan):
    """Kept/total channels per group of a ChannelPlan (not the indices: small and readable)."""
    kept = sum(len(g.keep) for g in plan.groups)
    total = sum(g.size for g in plan.groups)
    return {"model": plan.model_name, "meta": dict(plan.meta),
            "kept_channels": kept, "total_channels": total,
            "groups": {g.name: [len(g.keep), g.size] for g in plan.groups}}


def add_metadata(tflite, metadata, output_path=None):
    """The .tflite bytes with `metadata` (a JSON-able dict) embedded, replacing any earlier
    keras_slim entry; written to `output_path` when given."""
    data = check_metadata(metadata)
    content, label = read_bytes(tflite)
    model = schema.ModelT.InitFromObj(parse(content, label))
    if model.buffers is None:
        model.buffers = []
    entries = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    # A replaced entry leaves its old buffer unreferenced: harmless and tiny.
    builder = flatbuffers.Builder(len(content) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    if output_path is not None:
        write_bytes(output_path, out)
    return out


def read_metadata(tflite):
    """The dict stored by add_metadata / convert(metadata=...), or None if there is none."""
    content, label = read_bytes(tflite)
    model = parse(content, label)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode("utf-8", "replace") != METADATA_NAME:
            continue
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        try:
            return json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, TypeError):
            raise ExportError(f"{label}: the {METADATA_NAME!r} metadata is not valid JSON.") from None
    return None


def _name(entry):
    name = entry.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
