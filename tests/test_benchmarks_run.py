"""The benchmark pipeline runs end to end at toy sizes, so it cannot rot.

This checks that every workload builds, runs and lands in the report; it
times nothing (speed lives in benchmarks/, as ratios, never in tests).
"""
import json
import subprocess
import sys
from pathlib import Path

from roialign_suite.benchmarks import targets

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmarks_write_the_report(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "roialign_suite.benchmarks.performance_report", "--run", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"summary.md", "summary.json"} <= names, names
    assert any(name.endswith(".png") for name in names), names
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "numba" in json.dumps(summary) and "torchvision-cpu" in json.dumps(summary)
    # The Mask R-CNN workloads ran with both poolers.
    timed = {(row["workload"], row["implementation"]) for row in summary["maskrcnn"]}
    assert timed == {(w, i) for w in ("maskrcnn-train", "maskrcnn-eval") for i in ("torchvision-cpu", "numba")}, timed
    # Each RoI-count sweep ran on ours and torchvision at every count.
    swept = {(row["family"], row["rois"]) for row in summary["roi_sweeps"] if row["baseline_ms"] is not None}
    assert {family for family, _ in swept} == {"p2", "fpn-pooler", "mask-pooler"}, swept
    # Every target has its line, and our forward workloads their traffic model.
    assert len(summary["targets"]) == len(targets.all_targets())
    measured = [t for t in summary["targets"] if t["value"] is not None]
    assert any(t["kind"] == "floor" for t in measured) and any(t["kind"] == "speedup" for t in measured), measured
    assert summary["traffic"] and all(t["bytes"]["tap"] > 0 and t["bytes"]["output"] > 0 for t in summary["traffic"])
    assert "## Targets" in (tmp_path / "summary.md").read_text()


def test_where_time_goes_runs_every_experiment_and_checks_the_map_order_bitwise():
    """The kernel experiments at toy size: each row is there, and the map-ordered forward's output was checked
    equal to the shipped kernel's (``measure`` raises otherwise)."""
    from roialign_suite.benchmarks import where_time_goes

    rows = where_time_goes.measure(quick=True, rounds=1)
    assert [r["experiment"] for r in rows][:5] == [
        "RoI order (shipped)", "bin rows, RoI order, prefetch on", "bin rows, RoI order, prefetch off",
        "bin rows, map order, prefetch on", "bin rows, map order, prefetch off"]
    assert len(rows) == 12 and all(r["ms"] > 0 for r in rows), rows
