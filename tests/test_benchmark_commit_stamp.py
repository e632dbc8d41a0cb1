"""benchmarks.common.git_commit: the stamp each benchmark row carries. A script writing its
own results file must not mark its rows as run from uncommitted code."""
import os
import subprocess

from benchmarks import common


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _repository(root):
    for path in ("keras_slim/core.py", "benchmarks/results/table.md"):
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write("v1\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")


def test_a_rewritten_results_file_is_not_an_uncommitted_change(tmp_path, monkeypatch):
    root = str(tmp_path)
    _repository(root)
    monkeypatch.setattr(common, "ROOT", root)
    clean = common.git_commit()
    assert len(clean) >= 7 and "uncommitted" not in clean

    with open(os.path.join(root, "benchmarks/results/table.md"), "w") as f:
        f.write("a new table\n")
    assert common.git_commit() == clean

    with open(os.path.join(root, "keras_slim/core.py"), "w") as f:
        f.write("v2\n")
    assert common.git_commit() == f"{clean} + uncommitted changes"
