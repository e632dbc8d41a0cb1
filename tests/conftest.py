import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from keras_slim.compat import FLAVOUR, keras  # noqa: E402


def pytest_report_header(config):
    return f"keras flavour: {FLAVOUR} ({keras.__version__})"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Layer-name counters and seeds leak between tests otherwise.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
