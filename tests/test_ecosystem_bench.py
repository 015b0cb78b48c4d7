"""``roialign-suite ecosystem --bench --quick``: every installed third-party kernel lands in the report.

Toy sizes (it times nothing meaningful): each installed, timed third-party CPU kernel has a row, with its
error against the reference, on every forward workload of the box head, and on the forward+backward ones
exactly when it is differentiable; a forward-only kernel is left out of those with its reason.
"""
import json
import subprocess
import sys
from pathlib import Path

from roialign_suite.benchmarks.ecosystem_bench import WORKLOADS
from roialign_suite.benchmarks.runners import left_out
from roialign_suite.benchmarks.workloads import all_workloads
from roialign_suite.properties.ecosystem import kernels

REPO = Path(__file__).resolve().parents[1]


def test_every_installed_kernel_is_timed_where_its_record_allows(tmp_path):
    done = subprocess.run([sys.executable, "-m", "roialign_suite.cli", "ecosystem", "--bench", "--quick",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = json.loads((tmp_path / "summary.json").read_text())["throughput"]
    timed = {(r["workload"], r["implementation"]): r for r in rows}
    table = (tmp_path / "kernels.md").read_text()
    workloads = [w for w in all_workloads() if w.name in WORKLOADS]
    assert len(workloads) == 4
    installed = [k for k in kernels() if not k.unavailable and not k.not_timed]
    assert installed  # the test env installs ONNX Runtime and OpenVINO
    for kernel in installed:
        for workload in workloads:
            reason = left_out(workload, kernel)
            if workload.backward and not kernel.differentiable:
                assert (workload.name, kernel.name) not in timed
                assert reason == f"{kernel.name} is forward-only" and reason in table
            else:
                assert reason is None
                row = timed[(workload.name, kernel.name)]
                assert row["speedup"] is not None and row["rel_error"] is not None, row
                assert (row["grad_rel_error"] is not None) == workload.backward, row
        assert f"| {kernel.name} |" in table
