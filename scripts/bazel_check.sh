#!/usr/bin/env bash
# Bazel, offline: installs Debian's Bazel (bazel-bootstrap 4.2.3 + bazel-rules-java) when it's
# missing and we're root, then builds and runs an app and a quick test with --config=offline:
#   bazel run  --config=offline //apps:slim -- --help
#   bazel test --config=offline //tests:test_cucb
# Extra arguments go to both bazel commands, e.g. `bash scripts/bazel_check.sh --announce_rc`.
# Online users with their own Bazel don't need this: plain `bazel run //apps:slim -- --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bazel >/dev/null || [ ! -d /usr/share/bazel/rules/java ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap bazel-rules-java >/dev/null
  else
    echo "bazel_check: needs Debian's bazel-bootstrap and bazel-rules-java:" >&2
    echo "  sudo apt-get install bazel-bootstrap bazel-rules-java" >&2
    exit 1
  fi
fi
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh   # the pip packages the targets import

echo "=== bazel run --config=offline //apps:slim -- --help"
# absl's --help exits 1 after printing the help (as `python -m keras_slim.apps.slim --help` does), so
# success here is the help text, not the exit code: a failed build prints none.
set +e
help=$(bazel run --config=offline "$@" //apps:slim -- --help)
status=$?
set -e
printf '%s\n' "$help" | tail -n 5
if [ "$status" -gt 1 ] || ! grep -q 'Try --helpfull' <<<"$help"; then
  echo "bazel_check: //apps:slim --help failed (exit $status)" >&2
  exit 1
fi

echo "=== bazel test --config=offline //tests:test_cucb"
bazel test --config=offline "$@" //tests:test_cucb
