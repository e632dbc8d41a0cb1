#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole slimming pipeline on Fashion-MNIST.
# Extra arguments go to the app, e.g. `bash scripts/slim.sh --ratio=0.7`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec python3 -m keras_slim.apps.slim "$@"
