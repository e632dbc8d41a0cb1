"""Per-layer LiteRT latency tables: measured here by probes, or imported from a device.

    from keras_slim.latency import build_table, LatencyTable, import_op_profile
    table = build_table(model, cache="latency.json", dtype="int8", threads=1)
    table.predict_model(ChannelGraph(model))        # ms: sum of entries + overhead
    keras_slim.criterion_plan(model, "l1_norm", target={"latency_ms": 2.0},
                              latency_table=table)
    plan_for_measured_latency(model, "l1_norm", 2.0, table)  # timed, corrected, re-planned

File format: keras_slim.latency.table (module docstring).
"""
from keras_slim.latency.landing import plan_for_measured_latency
from keras_slim.latency.device import processor_info, runtime_info, table_key
from keras_slim.latency.probe import build_table, grid_widths, measure_model_ms
from keras_slim.latency.profile import import_op_profile, parse_op_profile
from keras_slim.latency.signature import signature, signature_key, timed_ops
from keras_slim.latency.table import FORMAT, LatencyTable, LatencyTableError

__all__ = ["FORMAT", "LatencyTable", "LatencyTableError", "build_table", "grid_widths",
           "measure_model_ms", "plan_for_measured_latency", "import_op_profile", "parse_op_profile", "processor_info",
           "runtime_info", "table_key", "signature", "signature_key", "timed_ops"]
