"""Reference models, their custom layers, and the datasets the apps and benchmarks use."""
