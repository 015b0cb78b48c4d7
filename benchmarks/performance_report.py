"""Benchmark report: the summary as Markdown and JSON, and PNG plots.

    roialign-suite report --run            # run every benchmark (~10 min on 2 cores), save, report
    roialign-suite report                  # report the latest saved run
    roialign-suite report --results F.json --out DIR

Writes into ``--out`` (default ``report/``): ``summary.md``, ``summary.json``,
``results.json`` (with ``--run``), ``throughput_vs_rois.png`` (the RoI-count
sweep, RoIs/s per implementation), ``speedup.png`` (speedup over torchvision
CPU per workload), ``accuracy.png`` (each case's error against the float64
reference against its speedup) and ``history.png`` (our speedup per workload across the
runs saved under ``.benchmarks/``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from roialign_suite.benchmarks import accuracy, figures, targets  # noqa: E402
from roialign_suite import options, paths  # noqa: E402
from roialign_suite.benchmarks.gate import latest_saved_run, saved_runs_folder  # noqa: E402

MODEL_NOTE = (
    "GB/s = modelled bytes / median time; the model (benchmarks/bandwidth.py) counts, per RoI, "
    "the feature pixels its samples can touch plus the output written (and for -fwdbwd the gradient traffic). "
    "'x floor' = median / floor (benchmarks/README.md, \"The floor\"): the bytes any implementation must move "
    "(every level's features read once and the output written once; for -fwdbwd also the output gradient read "
    "and the input gradient written) over the bandwidth of a torch copy of that many bytes, read plus written, "
    "measured in the same run."
)

TARGETS_NOTE = (
    "Each target's figure from this run (benchmarks/targets.py): a speedup is the other implementation's median "
    "over ours; 'x floor' is our median over the floor. IPEX is timed in its own environment (tox -e ipex, "
    "benchmarks/ipex.py); the ecosystem's kernels only where installed (roialign-suite ecosystem --bench)."
)

TRAFFIC_NOTE = (
    "Per forward workload, the path our cost model picks for each level (gather: taps read from the NCHW planes; "
    "convert: the level copied to channels-last, then the NHWC kernel; nhwc: a channels_last map, no copy) and "
    "the bytes it implies: the map bytes the taps touch (NCHW: whole 64-byte lines), the tap bytes the kernel "
    "loads (four taps per sample, each fetched afresh), the conversion's copy (read and write) and the output. "
    "'fetches per touched byte' is the reuse that stays for the caches to catch."
)

MASKRCNN_NOTE = (
    "torchvision's maskrcnn_resnet50_fpn (random weights, float32; benchmarks/workloads.py ModelWorkload) with "
    "roi_heads.box_roi_pool and mask_roi_pool from torchvision or ours; 'RoIs' pooled per step. 'pooling ms' is the "
    "time per step inside the two poolers (forward, and backward in the train step), 'pooling share' its "
    "fraction of the step (benchmarks/maskrcnn.py PoolerClock)."
)


def run_benchmarks(results: Path, quick: bool, pytest_args: Sequence[str]) -> int:
    """Every benchmark into ``results``; saved under ``.benchmarks/`` too unless ``quick``."""
    command = paths.pytest_command(
        [paths.package_dir("benchmarks")], "-q", f"--benchmark-json={results}",
        *(["--roialign-quick"] if quick else ["--benchmark-autosave", f"--benchmark-storage={saved_runs_folder()}"]),
        *pytest_args,
    )
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def _run_label(document: Dict) -> str:
    commit = (document.get("commit_info") or {}).get("id") or "no-commit"
    dirty = "+dirty" if (document.get("commit_info") or {}).get("dirty") else ""
    return f"{commit[:8]}{dirty} {document.get('datetime', '')[:19]}"


def write_summary(out: Path, records: List[Dict], document: Dict) -> List[figures.Row]:
    throughput = figures.throughput_results(records)
    rows = figures.summary_rows(throughput)
    models = figures.model_rows(figures.model_results(records))
    pairs = figures.pair_rows(throughput)
    sweeps = figures.roi_sweep_rows(throughput)
    jit = figures.jit_records(records)
    measured = targets.measure(throughput)
    traffic = figures.traffic_results(throughput)
    machine = document.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw", "unknown CPU")
    lines = [
        "# RoIAlign benchmark report",
        "",
        f"Run {_run_label(document)} on {machine.get('node', '?')}: {cpu}, "
        f"Python {machine.get('python_version', '?')}.",
        "",
        "## Targets (issue 22; reported, never asserted: the CI gate is benchmarks/gate.toml)",
        "",
        figures.markdown_table(targets.HEADER, [targets.cells(m) for m in measured]),
        "",
        TARGETS_NOTE,
        "",
        "## Throughput (median; speedup over torchvision CPU measured in the same run)",
        "",
        figures.markdown_table(figures.header(), [figures.row_cells(r) for r in rows]),
        "",
        MODEL_NOTE,
        "",
        accuracy.NOTE,
        "",
        "![accuracy beside speed](accuracy.png)",
        "",
        "## Our forward's memory traffic (a model, benchmarks/traffic.py) beside its time",
        "",
        figures.markdown_table(figures.TRAFFIC_HEADER, [figures.traffic_cells(r) for r in traffic]),
        "",
        TRAFFIC_NOTE,
        "",
        "![the forward's paths by RoI count](crossover.png)" if (out / "crossover.png").exists() else
        "(No crossover plot in this folder: `roialign-suite crossover --out DIR` writes crossover.png.)",
        "",
        "## RoI-count sweeps, forward (median; speedup over torchvision CPU, same run)",
        "",
        figures.markdown_table(figures.sweep_header(), [figures.sweep_cells(r) for r in sweeps]),
        "",
        "![time and speedup vs RoIs](throughput_vs_rois.png)",
        "",
        "## Mask R-CNN with each MultiScaleRoIAlign (median; speedup of the whole step, same run)",
        "",
        figures.markdown_table(figures.model_header(), [figures.model_cells(r) for r in models]),
        "",
        MASKRCNN_NOTE,
        "",
        "## Dtype pairs (bfloat16 vs the same channels_last workload in float32, same run)",
        "",
        figures.markdown_table(figures.PAIR_HEADER, [figures.pair_cells(p) for p in pairs]),
        "",
        "## First call (fresh process: import, then Numba JIT compile or cache load)",
        "",
        figures.markdown_table(figures.JIT_HEADER, [figures.jit_cells(j) for j in jit]),
        "",
        "## Plots",
        "",
        "![speedup](speedup.png)",
        "![history](history.png)",
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    summary = {
        "run": _run_label(document),
        "machine_info": machine,
        "commit_info": document.get("commit_info"),
        "throughput": figures.row_dicts(rows),
        "maskrcnn": figures.row_dicts(models),
        "dtype_pairs": figures.row_dicts(pairs),
        "roi_sweeps": [dict(row, speedup=r.speedup) for row, r in zip(figures.row_dicts(sweeps), sweeps)],
        "first_call": jit,
        "targets": [dict(label=m.target.label, kind=m.target.kind, goal=m.target.goal, workload=m.target.workload,
                         other=m.target.other, value=m.value, where=m.where, met=m.met)
                    for m in measured],
        "traffic": [dict(workload=r.workload, median_ms=r.median_s * 1e3, **r.traffic)
                    for r in traffic],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return rows


def plot_throughput_vs_rois(out: Path, records: List[Dict]) -> None:
    """Per sweep family, the forward's median time by RoI count for each implementation (top) and our
    speedup over the baseline (torchvision CPU) with the 2x target (bottom)."""
    points = [r for r in figures.throughput_results(records) if r.sweep and r.sweep.startswith("rois-")]
    if not points:  # a run of other workloads (log axes with no data raise)
        fig, ax = plt.subplots(figsize=(4.5, 1.5))
        ax.text(0.5, 0.5, "no RoI-count sweep in this run", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(out / "throughput_vs_rois.png", dpi=110)
        plt.close(fig)
        return
    families = list(dict.fromkeys(r.sweep for r in points))
    sweep_rows = figures.roi_sweep_rows(points)
    fig, axes = plt.subplots(2, len(families), figsize=(4.5 * len(families), 7), squeeze=False)
    for column, family in enumerate(families):
        top, bottom = axes[0][column], axes[1][column]
        mine = [r for r in points if r.sweep == family]
        for name in dict.fromkeys(r.implementation for r in mine):
            line = sorted((int(r.value), r.median_s * 1e3) for r in mine if r.implementation == name)
            top.plot([x for x, _ in line], [y for _, y in line], marker="o", label=name)
        top.set(xscale="log", yscale="log", ylabel="forward, ms (median)", title=family[len("rois-"):])
        ratio = sorted((r.rois, r.speedup) for r in sweep_rows
                       if f"rois-{r.family}" == family and r.speedup is not None)
        bottom.plot([x for x, _ in ratio], [y for _, y in ratio], marker="o", color="C0", label=figures.ours_name())
        bottom.axhline(2.0, color="grey", linestyle="--", label="target 2x")
        bottom.axhline(1.0, color="red", linestyle=":", label=figures.baseline_name())
        bottom.set(xscale="log", xlabel="RoIs per call", ylabel=f"speedup over {figures.baseline_name()}")
        for ax in (top, bottom):
            ax.grid(True, which="both", alpha=0.3)
        if mine:
            top.legend(fontsize=8)
            bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput_vs_rois.png", dpi=110)
    plt.close(fig)


def plot_speedup(out: Path, rows: List[figures.Row]) -> None:
    shown = [r for r in rows if r.implementation != figures.baseline_name() and r.speedup is not None]
    workloads = list(dict.fromkeys(r.workload for r in shown))
    names = list(dict.fromkeys(r.implementation for r in shown))
    height = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(workloads) * max(len(names), 1) ** 0.5 + 1.5))
    for i, name in enumerate(names):
        value = {r.workload: r.speedup for r in shown if r.implementation == name}
        ys = [w_index + i * height for w_index, w in enumerate(workloads) if w in value]
        ax.barh(ys, [value[w] for w in workloads if w in value], height=height, label=name)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(workloads))], workloads, fontsize=7)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel=f"speedup over {figures.baseline_name()} (same run; >1 is faster)", title="speedup per workload")
    if names:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "speedup.png", dpi=110)
    plt.close(fig)


ZERO_ERROR_SHOWN_AT = 1e-17  # where an exact result (error 0) is drawn on the log axis


def plot_accuracy(out: Path, rows: List[figures.Row]) -> None:
    """Each case's error relative to max |reference| (forward: dots; gradient: crosses) against its speedup."""
    fig, ax = plt.subplots(figsize=(8, 5))
    shown = [r for r in rows if r.speedup is not None and r.rel_error is not None]
    for i, name in enumerate(dict.fromkeys(r.implementation for r in shown)):
        mine = [r for r in shown if r.implementation == name]
        for field, marker, label in (("rel_error", "o", name), ("grad_rel_error", "x", f"{name} (gradient)")):
            points = [(r.speedup, getattr(r, field)) for r in mine if getattr(r, field) is not None]
            if points:
                ax.scatter([x for x, _ in points], [max(y, ZERO_ERROR_SHOWN_AT) for _, y in points],
                           marker=marker, color=f"C{i % 10}", label=label)
    ax.axvline(1.0, color="black", linewidth=0.8)
    scale = "log" if shown else "linear"  # a log axis with no data raises
    ax.set(xscale=scale, yscale=scale, xlabel=f"speedup over {figures.baseline_name()} (same run)",
           ylabel=f"max |error| / max |float64 reference| (0 drawn at {ZERO_ERROR_SHOWN_AT:g})",
           title="accuracy beside speed, per workload")
    ax.grid(True, which="both", alpha=0.3)
    if shown:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    plt.close(fig)


def saved_runs(folder: Optional[Path] = None) -> List[Dict]:
    """Every saved run's document, oldest first (pytest-benchmark numbers them)."""
    return [json.loads(p.read_text()) for p in sorted((folder or saved_runs_folder()).glob("*/*.json"), key=lambda p: p.name)]


def plot_history(out: Path, documents: List[Dict], implementation: Optional[str] = None) -> None:
    """Each saved run's speedup of ``implementation`` (default ours) per workload, oldest first."""
    implementation = implementation or figures.ours_name()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series: Dict[str, List] = {}
    labels = []
    for index, document in enumerate(documents):
        labels.append(f"{index + 1}\n{_run_label(document)[:8]}")
        results = figures.throughput_results(document.get("benchmarks", []))
        for (workload, name), speedup in figures.speedups(results).items():
            if name == implementation and speedup is not None and not workload.startswith("sweep-"):
                series.setdefault(workload, []).append((index, speedup))
    for workload, points in series.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=workload)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set(ylabel=f"{implementation} speedup over {figures.baseline_name()}", xlabel="saved run (commit)",
           title=f"history of saved runs ({len(documents)})")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)
    plt.close(fig)


def write_report(results: Path, out: Path, folder: Optional[Path] = None) -> List[figures.Row]:
    """All report files for the run in ``results``; history from ``folder`` (default the saved runs)."""
    out.mkdir(parents=True, exist_ok=True)
    records, document = figures.load_records(results)
    rows = write_summary(out, records, document)
    plot_throughput_vs_rois(out, records)
    plot_speedup(out, rows)
    plot_accuracy(out, rows)
    plot_history(out, saved_runs(folder))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="roialign-suite report", description=__doc__.split("\n")[0])
    options.add_to_argparse(parser, options.REPORT, out=Path("report"))
    options.add_pytest_arguments(parser)
    args = parser.parse_args(argv)
    args.run, args.quick, args.results, args.out = (args.roialign_run, bool(args.roialign_quick),
                                                    args.roialign_results, args.roialign_out)
    started = time.perf_counter()
    if args.run:
        args.out.mkdir(parents=True, exist_ok=True)
        args.results = args.out / "results.json"
        status = run_benchmarks(args.results, args.quick, args.pytest_args)
        if status != 0:
            print(f"benchmark run failed (pytest exit {status})", file=sys.stderr)
            return 1
    path = args.results or latest_saved_run()
    if path is None or not Path(path).exists():
        print(f"no benchmark results ({path or saved_runs_folder() / '*/*.json'} not found); use --run", file=sys.stderr)
        return 2
    rows = write_report(Path(path), args.out)
    print(figures.text_table(figures.header(), [figures.row_cells(r) for r in rows]))
    print(f"report written to {args.out}/ in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
