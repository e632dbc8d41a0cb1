"""Params and FLOPs (multiply-accumulates) per layer, and a before/after report.

MACs count convolutions and dense layers, the work that pruning removes; BN folds into
the conv on export and element-wise ops are negligible next to them.
"""
import numpy as np

from keras_slim.core.graph import ChannelGraph


def profile(model):
    """{"layers": {path: {"params", "macs"}}, "params": total, "macs": total} of a model
    or of its ChannelGraph (pass the graph when you have it: no second analysis).
    MACs per layer come from its rule in the registry."""
    graph = model if isinstance(model, ChannelGraph) else ChannelGraph(model)
    layers = {}
    for op in graph.ops:
        if op.is_input:
            continue
        params = int(sum(int(np.prod(w.shape)) for w in getattr(op.layer, "weights", [])))
        layers[op.path] = {"params": params, "macs": int(op.rule.macs(op))}
    return {"layers": layers,
            "params": sum(v["params"] for v in layers.values()),
            "macs": sum(v["macs"] for v in layers.values())}


def compare(before, after):
    """Before/after report of two models (or profiles) with the same layer names."""
    b = before if isinstance(before, dict) else profile(before)
    a = after if isinstance(after, dict) else profile(after)
    rows = []
    for path, old in b["layers"].items():
        new = a["layers"].get(path, {"params": 0, "macs": 0})
        if old["params"] or old["macs"]:
            rows.append({"layer": path, "params_before": old["params"],
                         "params_after": new["params"], "macs_before": old["macs"],
                         "macs_after": new["macs"]})
    return {"rows": rows, "params_before": b["params"], "params_after": a["params"],
            "macs_before": b["macs"], "macs_after": a["macs"],
            "params_ratio": b["params"] / max(a["params"], 1),
            "macs_ratio": b["macs"] / max(a["macs"], 1)}


def _human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def format_report(report):
    width = max([len(r["layer"]) for r in report["rows"]] + [5])
    lines = [f"{'layer':<{width}}  {'params':>17}  {'MACs':>19}"]
    for r in report["rows"]:
        lines.append(f"{r['layer']:<{width}}  {_human(r['params_before']):>8}→"
                     f"{_human(r['params_after']):<8}  {_human(r['macs_before']):>9}→"
                     f"{_human(r['macs_after']):<9}")
    lines.append(f"{'total':<{width}}  {_human(report['params_before']):>8}→"
                 f"{_human(report['params_after']):<8}  {_human(report['macs_before']):>9}→"
                 f"{_human(report['macs_after']):<9}")
    lines.append(f"params {report['params_ratio']:.2f}× smaller, "
                 f"FLOPs {report['macs_ratio']:.2f}× smaller")
    return "\n".join(lines)
