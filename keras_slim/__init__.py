"""keras-slim: make Keras CNNs small and fast for phones."""
from keras_slim import compat  # noqa: F401  (selects the Keras flavour first)

__version__ = "0.1.0"
