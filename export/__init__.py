"""Export of Keras models to TFLite (LiteRT): conversion, quantization, verification, benchmarks.

    from keras_slim.export import convert, verify, read_metadata, benchmark_tflite, build_metadata
    tflite = convert(model, "int8", representative_data=x[:200], output_path="m.tflite",
                     metadata=build_metadata(dataset="fashion_mnist", plan=plan))
    verify("m.tflite", keras_model=model, x=x_test, y=y_test)["agreement"]
    benchmark_tflite("m.tflite", threads=(1, 4))["latency_ms"][1]["median"]

Quantization-aware training (tf_keras only): export.qat.qat_finetune then convert(.., "int8").
"""
from keras_slim.export.benchmark import benchmark_tflite
from keras_slim.export.convert import MODES, convert, is_qat_model, unsupported_ops
from keras_slim.export.errors import ExportError
from keras_slim.export.metadata import add_metadata, build_metadata, plan_summary, read_metadata
from keras_slim.export.qat import qat_finetune, quantize_aware
from keras_slim.export.verify import load_interpreter, predict, verify

__all__ = [
    "MODES", "ExportError", "convert", "is_qat_model", "unsupported_ops", "verify", "predict",
    "load_interpreter", "add_metadata", "build_metadata", "plan_summary", "read_metadata",
    "benchmark_tflite", "quantize_aware", "qat_finetune",
]
