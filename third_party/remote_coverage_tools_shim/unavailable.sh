#!/bin/sh
echo "bazel coverage isn't available with --config=offline (no @remote_coverage_tools)" >&2
exit 1
