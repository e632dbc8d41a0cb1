#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the test suite under Keras 3 and under tf_keras.
# The two flavours run at the same time (much of a Keras test is single-threaded tracing,
# so two processes share 2 cores well); each one's output is printed when it has
# ended, Keras 3 first.
# SERIAL=1 runs them one after the other, output live.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh || exit 1
export TF_CPP_MIN_LOG_LEVEL=2
flavours=("Keras 3:0" "tf_keras (TF_USE_LEGACY_KERAS=1):1")
status=0
if [ "${SERIAL:-0}" = 1 ]; then
    for flavour in "${flavours[@]}"; do
        echo "=== pytest under ${flavour%:*}"
        TF_USE_LEGACY_KERAS=${flavour##*:} python3 -m pytest -q "$@" || status=1
    done
    exit $status
fi
logs=$(mktemp -d) || exit 1
pids=()
# background jobs ignore Ctrl-C: stop them, and the apps their tests started, with the
# script (set -m gives each run its own process group)
set -m
trap 'for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null; done; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM
echo "pytest under Keras 3 and tf_keras, output in $logs until each ends"
for flavour in "${flavours[@]}"; do
    TF_USE_LEGACY_KERAS=${flavour##*:} python3 -m pytest -q "$@" \
        > "$logs/${flavour##*:}.log" 2>&1 &
    pids+=($!)
done
for i in "${!flavours[@]}"; do
    wait "${pids[$i]}" || status=1
    echo "=== pytest under ${flavours[$i]%:*}"
    cat "$logs/${flavours[$i]##*:}.log"
done
exit $status
