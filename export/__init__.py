"""Export of Keras models to TFLite (LiteRT): conversion, quantization, verification, benchmarks."""
