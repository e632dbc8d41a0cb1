"""The results suite's bookkeeping (benchmarks/suite_*.py): goal verdicts, ratios, the
markdown it prints, the CPU's int8 units, interleaved LiteRT timing and its flags."""
import os
import sys

import numpy as np
import pytest

from benchmarks import suite, suite_budget, suite_rows, suite_tables
from benchmarks.common import int8_units
from benchmarks.suite_deploy import latencies
from benchmarks.suite_tables import goal, goals_table, pct
from keras_slim import export
from keras_slim.compat import keras


def _row(name, macs, ms, builtin_ms, float_ms, accuracy, size_kb=100.0, **extra):
    return {"row": name, "accuracy": [accuracy], "seconds": [10.0], "after_rebuild": [],
            "params": macs // 10, "macs": macs, "int8_accuracy": accuracy,
            "size_kb": size_kb, "gzip_kb": size_kb / 2, "latency_ms": ms,
            "builtin_latency_ms": builtin_ms, "float32_latency_ms": float_ms, **extra}


@pytest.fixture
def rows():
    rows = {"baseline": _row("baseline", 1000, 1.0, 4.0, 2.0, 0.90)}
    rows["slimming t=50%"] = _row("slimming t=50%", 500, 0.9, 2.0, 1.0, 0.88, 50.0,
                                  after_rebuild=[{"compensated": 0.5, "uncompensated": 0.4}],
                                  gamma_share=0.3)
    rows["slimming t=70%"] = _row("slimming t=70%", 100, 0.8, 0.5, 0.25, 0.86, 10.0,
                                  after_rebuild=[{"compensated": 0.3, "uncompensated": 0.1}],
                                  gamma_share=0.3)
    for p in (0.5, 0.3):
        for policy in suite_rows.POLICIES:
            rows[suite_rows._dce(p, policy)] = _row(
                suite_rows._dce(p, policy), 300, 0.8, 1.0, 0.5, 0.85,
                after_rebuild=[{"rebuilt": 0.2}])
    rows["uniform width"] = _row("uniform width", 100, 0.8, 0.5, 0.25, 0.87, width=0.3)
    rows["tfmot magnitude pruning"] = _row(
        "tfmot magnitude pruning", 1000, 1.2, 4.0, 2.0, 0.80, 200.0, nonzero_params=100,
        nonzero_macs=90, kernel_sparsity=0.9, flavour="tf_keras 2.x")
    return rows


def test_goals_compare_latency_gain_with_flops_reduction(rows):
    goals, lines = suite_rows._goals("net", rows, (0.5, 0.7))
    by_name = {g["goal"]: g for g in goals}
    xnn50 = by_name["int8 latency gain / FLOPs reduction, slimming t=50%, XNNPACK"]
    assert xnn50["value"] == pytest.approx((1.0 / 0.9) / 2) and xnn50["met"] is False
    builtin50 = by_name["int8 latency gain / FLOPs reduction, slimming t=50%, builtin "
                        "kernels (no XNNPACK)"]
    assert builtin50["value"] == pytest.approx(1.0) and builtin50["met"] is True
    tfmot = by_name["tfmot int8 latency / slimming t=70% int8 latency, XNNPACK"]
    assert tfmot["value"] == pytest.approx(1.5) and tfmot["met"] is False
    size = by_name["tfmot int8 size / slimming t=70% int8 size"]
    assert size["value"] == pytest.approx(20.0) and size["met"] is True
    assert "int8 acc. slimmed − tfmot +6.00 pt" in size["where"]
    # FLOPs reduction, then gain (gain / FLOPs) for XNNPACK int8, builtin int8, float32.
    assert lines[1] == ["slimming t=70%", "10.00×", "1.25× (0.12)", "8.00× (0.80)",
                        "8.00× (0.80)"]


def test_markdown_says_not_met_and_names_every_column(rows):
    goals, lines = suite_rows._goals("net", rows, (0.5, 0.7))

    class Ctx:
        budget = suite_budget.FULL
    text = suite_rows._markdown(Ctx, "net", rows, goals, lines)
    assert "| ms int8 XNNPACK (1 thread) | ms int8 builtin | ms float32 XNNPACK |" in text
    assert "| slimming t=70% | 86.00 (1 seed) | 30.00 / 10.00 | 86.00 |" in text
    assert text.count("**NOT met**") == sum(g["met"] is False for g in goals) == 4
    assert f"first 20,000 {suite_budget.FULL.dataset} training images" in text
    assert "CUCB − random policy = +0.00 pt" in text


def test_tables_helpers():
    assert pct([0.90, 0.92]) == "91.00 ± 1.00 (2 seeds)"
    assert pct(0.5) == "50.00 (1 seed)"
    assert goal("g", None, "<=", 1.1)["met"] is None
    table = goals_table([goal("fast", 0.5, "<=", 0.6), goal("slow", 0.7, "<=", 0.6)])
    assert "| fast |  | 0.500 | <= 0.6 | met |" in table
    assert "| slow |  | 0.700 | <= 0.6 | **NOT met** |" in table
    # A |γ| header must not add a column.
    assert suite_tables.table(["share |γ| < 0.01", "n"], [[1, 2]]).splitlines()[0] == \
        "| share \\|γ\\| < 0.01 | n |"


@pytest.mark.parametrize("text, expected", [
    ("flags\t\t: fpu sse avx512_vnni amx_int8 amx_tile\n", "AMX-INT8, AVX512-VNNI"),
    ("Features\t: fp asimd asimddp i8mm\n", "NEON dot product, Arm I8MM"),
    ("flags\t\t: fpu sse2\n", "none listed"),
])
def test_int8_units_from_cpuinfo(tmp_path, text, expected):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\n" + text)
    assert int8_units(str(path)) == expected
    assert int8_units(str(tmp_path / "missing")) == "unknown"


def test_latencies_interleave_every_file_and_kernel(tmp_path):
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    path = str(tmp_path / "m.tflite")
    export.convert(model, "float32", output_path=path)
    files = {("m", "xnnpack"): (path, True), ("m", "builtin"): (path, False)}
    result = latencies(files, runs=3, rounds=2, warmup=1)
    assert set(result) == set(files)
    for figures in result.values():
        assert len(figures["round_medians"]) == 2
        assert figures["median_ms"] == pytest.approx(np.median(figures["round_medians"]))


def test_suite_flags_are_checked(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["suite.py", "--only", "rows,plots"])
    with pytest.raises(SystemExit):
        suite._parse()
    assert "unknown part(s) ['plots']" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["suite.py", "--dataset", "imagenet"])
    with pytest.raises(SystemExit):
        suite._parse()
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["suite.py", "--dataset", "cifar10", "--quick"])
    assert suite._parse().out.endswith(os.path.join("results", "suite_cifar10_quick.md"))
