#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the test suite under Keras 3 and under tf_keras.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh || exit 1
export TF_CPP_MIN_LOG_LEVEL=2
status=0
echo "=== pytest under Keras 3"
TF_USE_LEGACY_KERAS=0 python3 -m pytest -q "$@" || status=1
echo "=== pytest under tf_keras (TF_USE_LEGACY_KERAS=1)"
TF_USE_LEGACY_KERAS=1 python3 -m pytest -q "$@" || status=1
exit $status
