"""``roialign-suite ecosystem --bench``: every installed third-party CPU kernel timed beside ours and torchvision.

The box head on P2 (one ``roi_align``) and through the FPN pooler (:data:`WORKLOADS`), forward and
forward+backward, in one benchmark run (``roialign-suite report --run``, test_throughput only) with ours and the
baseline, so every speedup compares medians of the same run and every case has its error against the float64
reference beside it (:mod:`~roialign_suite.benchmarks.accuracy`). A kernel its record rules out of a workload
(forward-only in ``-fwdbwd``, not installed, not timed) is not run; the table gives the reason
(:func:`~roialign_suite.benchmarks.runners.left_out`). Writes the report (``summary.md``, ``summary.json``, plots)
and ``kernels.md`` (kernel x workload: speedup and error) into ``out``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from roialign_suite.benchmarks import accuracy, figures, performance_report
from roialign_suite.benchmarks.runners import left_out
from roialign_suite.benchmarks.workloads import all_workloads
from roialign_suite.implementations import registry
from roialign_suite.implementations.records import Implementation

WORKLOADS = ("box-head-p2-fwd", "box-head-p2-fwdbwd", "box-head-fpn-pooler-fwd", "box-head-fpn-pooler-fwdbwd")


def kernel_cell(row: figures.Row) -> str:
    """A timed case: speedup, then rel error of the output (and of the gradient, where compared)."""
    cell = f"{'-' if row.speedup is None else f'{row.speedup:.2f}x'}, err {figures.error_cell(row.rel_error)}"
    return cell if row.grad_rel_error is None else f"{cell}, grad {figures.error_cell(row.grad_rel_error)}"


def kernel_table(kernels: Sequence[Implementation], rows: Sequence[figures.Row]) -> Tuple[str, List[str]]:
    """``(Markdown table kernel x workload, each reason cases were left out with their workloads)``; a cell
    missing from ``rows`` without a reason reads 'did not run'."""
    workloads = [w for w in all_workloads() if w.name in WORKLOADS]
    found: Dict[Tuple[str, str], figures.Row] = {(r.workload, r.implementation): r for r in rows}
    lines, reasons = [], {}
    for kernel in kernels:
        cells = []
        for workload in workloads:
            reason = left_out(workload, kernel)
            if (workload.name, kernel.name) in found:
                cells.append(kernel_cell(found[(workload.name, kernel.name)]))
            elif reason:
                cells.append("left out")
                reasons.setdefault(reason, []).append(workload.name)
            else:
                cells.append("did not run")
        lines.append((kernel.name, *cells))
    header = ("kernel", *(w.name for w in workloads))
    return figures.markdown_table(header, lines), [f"{reason} ({', '.join(names)})" for reason, names in reasons.items()]


def run(third_party: Sequence[Implementation], out: Path, quick: bool = False, pytest_args: Sequence[str] = ()) -> int:
    """Time ours, the baseline and ``third_party`` on :data:`WORKLOADS`, then write the report and ``kernels.md``."""
    ours, baseline = registry.the_one("ours"), registry.the_one("baseline")
    kernels = [ours, baseline, *(k for k in third_party if k.name not in (ours.name, baseline.name))]
    timed = [k.name for k in kernels if not k.unavailable and not k.not_timed]
    status = performance_report.main([
        "--run", "--out", str(out), *(["--quick"] if quick else []), "--",
        f"--roialign-workload={','.join(WORKLOADS)}", f"--roialign-implementation={','.join(timed)}",
        "-k", "test_throughput", *pytest_args,
    ])
    if status != 0:
        return status
    records, _ = figures.load_records(out / "results.json")
    table, reasons = kernel_table(kernels, figures.summary_rows(figures.throughput_results(records)))
    text = "\n".join([
        "# The ecosystem's kernels: box head on P2 and through the FPN pooler", "",
        f"Each cell: speedup over {figures.baseline_name()} (medians of the same run), then the error relative to "
        "max |float64 reference| of the output (and of the features' gradient). Every figure: summary.md.", "",
        table, "", accuracy.NOTE, "", "Left out:", "", *[f"- {r}" for r in reasons], "",
    ])
    (out / "kernels.md").write_text(text)
    print(text)
    return 0
