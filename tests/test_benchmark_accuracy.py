"""The benchmarks' accuracy columns: each timed kernel against the float64 reference, on the workload's inputs.

A quick run (toy workloads, through ``performance_report --run --quick``) of the P2 box head, forward and
forward+backward, and the FPN pooler forward, on torchvision and a planted kernel (torchvision's output times
1.01, ``report_kernels.scaled_by_1_01``). The test recomputes torchvision's and the planted kernel's forward error
itself from the same inputs, so a hard-coded column, or one computed against anything but the reference on
those inputs, fails.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from roialign_suite import reference
from roialign_suite.benchmarks.workloads import all_workloads, build_inputs

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PLANTED = "report_kernels:scaled_by_1_01"
WORKLOADS = ("box-head-p2-fwd", "box-head-p2-fwdbwd", "box-head-fpn-pooler-fwd")


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(
        [sys.executable, "-m", "roialign_suite.benchmarks.performance_report", "--run", "--quick", "--out", str(out),
         "--", f"--roialign-workload={','.join(WORKLOADS)}", "--roialign-implementation=torchvision-cpu",
         f"--roialign-target={PLANTED}", "-k", "test_throughput"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = json.loads((out / "summary.json").read_text())["throughput"]
    return {(r["workload"], r["implementation"]): r for r in rows}, (out / "summary.md").read_text()


def planted_name(table):
    (name,) = {i for _, i in table if PLANTED in i}
    return name


def forward_errors(workload_name):
    """``(torchvision's, the planted kernel's)`` max |output - reference| on the quick workload's P2 call, all RoIs."""
    (workload,) = [w.quick() for w in all_workloads() if w.name == workload_name]
    inputs = build_inputs(workload)
    assert inputs.rois.shape[0] <= 32  # the quick workload's RoIs are all in the compared slice
    args = (workload.output_size, workload.scales[0], workload.sampling_ratio, workload.aligned)
    want = reference.roi_align(inputs.features[0].double(), inputs.rois.double(), *args)
    got = torchvision.ops.roi_align(inputs.features[0], inputs.rois, *args)
    planted = (1.01 * got).double()  # in float32, as the planted kernel computes it
    return float((got.double() - want).abs().max()), float((planted - want).abs().max()), float(want.abs().max())


@pytest.mark.parametrize("workload", ["box-head-p2-fwd", "box-head-p2-fwdbwd"])
def test_the_forward_error_is_against_the_reference_on_the_workloads_inputs(summary, workload):
    table, _ = summary
    torchvision_error, planted_error, scale = forward_errors(workload)
    assert 0 < torchvision_error < 1e-5 * scale
    for name, expected in (("torchvision-cpu", torchvision_error), (planted_name(table), planted_error)):
        row = table[(workload, name)]
        assert row["max_abs_error"] == pytest.approx(expected, rel=1e-9), name
        assert row["rel_error"] == pytest.approx(expected / scale, rel=1e-9), name


@pytest.mark.parametrize("workload", WORKLOADS)
def test_a_kernel_one_percent_off_shows_it(summary, workload):
    table, markdown = summary
    planted, honest = table[(workload, planted_name(table))], table[(workload, "torchvision-cpu")]
    assert planted["rel_error"] == pytest.approx(0.01, rel=1e-2)
    assert 0 < honest["rel_error"] < 1e-5
    if workload.endswith("-fwdbwd"):  # the features' gradient: the planted kernel's is 1.01 times torchvision's
        assert planted["grad_rel_error"] == pytest.approx(0.01, rel=1e-2)
        assert 0 < honest["grad_rel_error"] < 1e-5
    else:
        assert planted["grad_rel_error"] is None and honest["grad_rel_error"] is None
    # The Markdown table shows it beside the speedup.
    line = next(l for l in markdown.splitlines() if l.startswith(f"| {workload} | {planted_name(table)} |"))
    assert f"| {planted['rel_error']:.1e} |" in line and line.count("x |") >= 1
