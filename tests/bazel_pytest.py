"""pytest runner for `bazel test` (tests/BUILD): `bazel_pytest.py [--tf_keras] FILE... [ARGS]`.

FILEs are paths relative to the repository root ($(rootpath ...) in tests/BUILD), looked up in
the runfiles tree, next to the repository's pytest.ini: pytest runs with the project's
configuration (`-m "not slow"` etc.) as `python3 -m pytest` in the work tree does. Other
arguments go to pytest as they are (`bazel test //tests:test_apps --test_arg=-k --test_arg=NAME`).
--tf_keras runs the tests under tf_keras (TF_USE_LEGACY_KERAS=1) instead of Keras 3, as the
second half of scripts/test.sh does.
"""
import os
import sys

# The directory of this file, with symlinks resolved: the source tree, not the runfiles tree.
# pytest puts the runfiles' tests/ on sys.path itself when it imports the test files.
del sys.path[0]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # runfiles, unresolved


def main(argv):
    args = []
    os.environ["TF_USE_LEGACY_KERAS"] = "0"
    for arg in argv:
        if arg == "--tf_keras":
            os.environ["TF_USE_LEGACY_KERAS"] = "1"
        elif not arg.startswith("-") and os.path.exists(os.path.join(ROOT, arg)):
            args.append(os.path.join(ROOT, arg))  # a test file or directory
        else:
            args.append(arg)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tmp = os.environ.get("TEST_TMPDIR")
    if tmp:  # bazel test: the runfiles tree is no place for hypothesis' example database
        os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tmp, ".hypothesis"))
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:  # per-test results for Bazel's test.xml
        args.append("--junitxml=" + xml)

    import pytest  # after TF_USE_LEGACY_KERAS is set: plugins may import keras

    return pytest.main(["-q", "--rootdir=" + ROOT, "-c", os.path.join(ROOT, "pytest.ini")] + args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
