"""The benchmark gate's logic on synthetic pytest-benchmark results (nothing is timed)."""
from __future__ import annotations

import json

import pytest

from roialign_suite.benchmarks import figures, gate

CONFIG = gate.parse_config(
    """
baseline = "torchvision-cpu"
implementations = ["numba"]
[min_speedup]
"box-head-p2-fwd" = 1.5
"""
)


def record(workload: str, implementation: str, median_s: float) -> dict:
    """One pytest-benchmark JSON entry as the benchmarks write it."""
    return {
        "name": f"test_throughput[{workload}-{implementation}]",
        "stats": {"median": median_s, "rounds": 3},
        "extra_info": {
            "kind": figures.THROUGHPUT,
            "workload": workload,
            "implementation": implementation,
            "rois": 1024,
            "bytes": 2_000_000,
            "copy_bytes_per_s": 1e10,
        },
    }


def verdicts(*records):
    return gate.evaluate(figures.throughput_results(records), CONFIG)


def test_passes_when_speedup_reaches_the_minimum():
    (v,) = verdicts(record("box-head-p2-fwd", "torchvision-cpu", 0.30), record("box-head-p2-fwd", "numba", 0.20))
    assert v.passed
    assert "1.50x" in v.message


def test_fails_below_the_minimum_naming_workload_and_both_figures():
    (v,) = verdicts(record("box-head-p2-fwd", "torchvision-cpu", 0.30), record("box-head-p2-fwd", "numba", 0.25))
    assert not v.passed
    assert v.message == (
        "box-head-p2-fwd: numba is 1.20x torchvision-cpu (median 250.0 ms vs 300.0 ms), below the minimum 1.50x"
    )


def test_missing_baseline_fails():
    (v,) = verdicts(record("box-head-p2-fwd", "numba", 0.1))
    assert not v.passed
    assert "no torchvision-cpu timing" in v.message


def test_missing_gated_implementation_fails():
    (v,) = verdicts(record("box-head-p2-fwd", "torchvision-cpu", 0.3))
    assert not v.passed
    assert "no numba timing" in v.message


def test_plug_in_targets_are_gated_too():
    slowed = "target:benchmarks.slowed:roi_align"
    results = verdicts(
        record("box-head-p2-fwd", "torchvision-cpu", 0.30),
        record("box-head-p2-fwd", "numba", 0.10),
        record("box-head-p2-fwd", slowed, 0.40),
    )
    assert [(v.implementation, v.passed) for v in results] == [("numba", True), (slowed, False)]


def test_other_runtimes_are_not_gated():
    results = verdicts(
        record("box-head-p2-fwd", "torchvision-cpu", 0.30),
        record("box-head-p2-fwd", "numba", 0.10),
        record("box-head-p2-fwd", "onnxruntime", 10.0),
    )
    assert [v.implementation for v in results] == ["numba"]


def test_main_exit_status_and_message(tmp_path, capsys):
    config = tmp_path / "gate.toml"
    config.write_text('[min_speedup]\n"box-head-p2-fwd" = 1.5\n')
    results = tmp_path / "run.json"
    slow = [record("box-head-p2-fwd", "torchvision-cpu", 0.30), record("box-head-p2-fwd", "numba", 0.25)]
    results.write_text(json.dumps({"benchmarks": slow}))
    assert gate.main(["--config", str(config), "--results", str(results)]) == 1
    assert "gate FAILED" in capsys.readouterr().err
    fast = [record("box-head-p2-fwd", "torchvision-cpu", 0.30), record("box-head-p2-fwd", "numba", 0.10)]
    results.write_text(json.dumps({"benchmarks": fast}))
    assert gate.main(["--config", str(config), "--results", str(results)]) == 0


def test_missing_results_file_is_a_usage_error(tmp_path):
    assert gate.main(["--results", str(tmp_path / "absent.json")]) == 2


@pytest.mark.parametrize(
    "text, complaint",
    [
        ('[min_speedup]\n"w" = 0\n', "min_speedup.w must be a positive number"),
        ('[min_speedup]\n"w" = "fast"\n', "min_speedup.w must be a positive number"),
        ('baseline = "torchvision-cpu"\n', "[min_speedup] must map"),
        ('implementations = "numba"\n[min_speedup]\n"w" = 1\n', "implementations must be a list"),
    ],
)
def test_bad_config_names_the_entry(text, complaint):
    with pytest.raises(ValueError, match=complaint.replace("[", r"\[").replace(".", r"\.")):
        gate.parse_config(text)


def test_shipped_config_gates_existing_workloads():
    from roialign_suite.benchmarks.workloads import all_workloads

    names = {w.name for w in all_workloads()}
    config = gate.load_config()
    assert config.min_speedup and set(config.min_speedup) <= names
