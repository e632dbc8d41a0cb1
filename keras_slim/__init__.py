"""keras-slim: make Keras CNNs small and fast for phones.

The pipeline, left to right::

    model ─► slimming (γ-L1 training) ─┐
          └► dce (gated CUCB training) ┴► criteria ─► ChannelPlan ─► rebuild ─► fine-tune ─► export

Example:

    import keras_slim as ks
    plan = ks.l1_norm_plan(model, ratio=0.5)          # or ks.gamma_plan, ks.dce_plan, ...
    small = ks.rebuild(model, plan)                   # a new, narrower model
    print(ks.check_equivalence(ks.mask(model, plan), small)["max_abs"])
    print(ks.format_report(ks.compare(model, small)))
    result = ks.slim(model, train_ds, method="slimming", ratio=0.5)  # all steps in one call
    ks.export_tflite(small, "int8", representative_data=x[:200], output_path="m.tflite")

Names resolve on first use, so `import keras_slim` does not load TensorFlow by itself
(the apps quiet TF's logs before it does).
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # latency tables and cost targets
    "LatencyTable": "keras_slim.latency.table",
    "build_table": "keras_slim.latency.probe",
    "import_op_profile": "keras_slim.latency.profile",
    "plan_for_measured_latency": "keras_slim.latency.landing",
    "check_target": "keras_slim.core.targets",
    "prune_iteratively": "keras_slim.core.iterative",
    # core: graph, plans, rebuild, checks, metrics, rules
    "ChannelGraph": "keras_slim.core.graph",
    "GraphError": "keras_slim.compat",
    "ChannelPlan": "keras_slim.core.plan",
    "plan_from_scores": "keras_slim.core.plan",
    "l1_norm_plan": "keras_slim.core.plan",
    "random_plan": "keras_slim.core.plan",
    "channel_scores": "keras_slim.core.criteria",
    "criterion_plan": "keras_slim.core.criteria",
    "CRITERIA": "keras_slim.core.criteria",
    "rebuild": "keras_slim.core.rebuild",
    "mask": "keras_slim.core.rebuild",
    "RebuildReport": "keras_slim.core.rebuild",
    "check_equivalence": "keras_slim.core.equivalence",
    "profile": "keras_slim.core.metrics",
    "compare": "keras_slim.core.metrics",
    "format_report": "keras_slim.core.metrics",
    "register_rule": "keras_slim.core.rules",
    "rule_for": "keras_slim.core.rules",
    "Rule": "keras_slim.core.rules",
    "RULE_KINDS": "keras_slim.core.rules",
    "load_model": "keras_slim.serialization",
    # one call: model + data -> pruned, fine-tuned model
    "slim": "keras_slim.pipeline",
    "SlimResult": "keras_slim.pipeline",
    "distiller": "keras_slim.training.distillation",
    "keras_slim_objects": "keras_slim.serialization",
    # Network Slimming
    "SlimBatchNormalization": "keras_slim.slimming",
    "slimmable": "keras_slim.slimming",
    "strip": "keras_slim.slimming",
    "L1Schedule": "keras_slim.slimming",
    "GammaLogger": "keras_slim.slimming",
    "ProximalL1": "keras_slim.slimming",
    "GrowingL1": "keras_slim.slimming",
    "GammaFade": "keras_slim.slimming",
    "gamma_plan": "keras_slim.slimming",
    "sparsity_summary": "keras_slim.slimming",
    "network_slimming": "keras_slim.slimming.pipeline",
    # Dynamic Channel Execution
    "gate_model": "keras_slim.dce",
    "strip_gates": "keras_slim.dce",
    "compact_summary": "keras_slim.dce",
    "CUCBCallback": "keras_slim.dce",
    "dce_plan": "keras_slim.dce",
    "run_dce": "keras_slim.dce",
    "recalibrate_batch_norm": "keras_slim.core.batch_norm_statistics",
    # export
    "export_tflite": "keras_slim.export",
    "verify_tflite": "keras_slim.export",
    "benchmark_tflite": "keras_slim.export",
}
_ALIASES = {"export_tflite": "convert", "verify_tflite": "verify"}
_SUBPACKAGES = ("core", "slimming", "dce", "training", "zoo", "latency", "export", "apps")

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), _ALIASES.get(name, name))
        globals()[name] = value
        return value
    if name in _SUBPACKAGES or name == "compat":
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_slim' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))


class _SiblingPackages(importlib.abc.MetaPathFinder):
    """keras_slim.export and keras_slim.apps live in the repository's top-level export/ and
    apps/ folders; an installed wheel puts them inside keras_slim/ (setup.py's
    package_dir). This finder serves a source checkout (tests, Bazel runfiles): asked
    right after the path finder, so an installed wheel still wins, and an editable
    install of another checkout does not."""

    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _NAMES = {f"{__name__}.export": "export", f"{__name__}.apps": "apps"}

    def find_spec(self, fullname, path=None, target=None):
        folder = self._NAMES.get(fullname)
        if folder is None:
            return None
        location = os.path.join(self._ROOT, folder, "__init__.py")
        if not os.path.isfile(location):
            return None
        return importlib.util.spec_from_file_location(
            fullname, location, submodule_search_locations=[os.path.dirname(location)])


def _install_finder():
    if any(type(f).__name__ == "_SiblingPackages" for f in sys.meta_path):
        return
    path_finders = [i for i, f in enumerate(sys.meta_path)
                    if getattr(f, "__name__", "") == "PathFinder"]
    position = path_finders[0] + 1 if path_finders else len(sys.meta_path)
    sys.meta_path.insert(position, _SiblingPackages())


_install_finder()
