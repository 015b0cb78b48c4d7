"""Benchmark results -> figures: RoIs/s, effective bandwidth, speedup over torchvision.

Works on pytest-benchmark's JSON records (``{"name", "group", "stats":
{"median", ...}, "extra_info": {...}}``), live or loaded from a saved run,
so the terminal summary, the gate and the report compute every figure here.
Speedups only ever compare medians measured in the same run: over
torchvision CPU per workload, and for a dtype pair (``Workload.compared_with``)
of one implementation's float32 median over its bfloat16 median.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple



@functools.lru_cache(maxsize=None)
def baseline_name() -> str:
    """The implementation every speedup is measured over: the registry's ``baseline`` record
    (imported here, not at module import: the gate reads saved runs without torch)."""
    from roialign_suite.implementations import registry

    return registry.the_one("baseline").name


@functools.lru_cache(maxsize=None)
def ours_name() -> str:
    """Our kernel's name: the registry's ``ours`` record."""
    from roialign_suite.implementations import registry

    return registry.the_one("ours").name


THROUGHPUT = "throughput"  # extra_info["kind"] of a workload timing
JIT = "jit"  # extra_info["kind"] of a first-call timing
MODEL = "model"  # extra_info["kind"] of a model workload timing (Mask R-CNN step)


@dataclass(frozen=True)
class Result:
    """One (workload, implementation) timing and the facts recorded with it."""

    workload: str
    implementation: str
    median_s: float
    rounds: int
    rois: int
    bytes: int
    copy_bytes_per_s: float
    sweep: Optional[str] = None
    value: object = None
    floor_bytes: Optional[int] = None  # absent from runs saved before it was recorded
    compared_with: Optional[str] = None  # the workload of a dtype pair this one is compared with
    target_speedup: Optional[float] = None
    # Error against the float64 reference (benchmarks/accuracy.py; None: not computed, or a run saved before).
    max_abs_error: Optional[float] = None
    rel_error: Optional[float] = None
    grad_rel_error: Optional[float] = None
    # Our forward's modelled traffic (benchmarks/traffic.py: {"paths": [...], "bytes": {kind: bytes}}); ours only.
    traffic: Optional[Mapping] = None
    direction: Optional[str] = None  # "fwd" or "fwdbwd" (absent from runs saved before it was recorded)

    @property
    def rois_per_s(self) -> float:
        return self.rois / self.median_s

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.median_s

    @property
    def times_floor(self) -> Optional[float]:
        """Median over the floor: ``floor_bytes`` at the copy bandwidth measured in the same run on a copy of
        ``floor_bytes`` (benchmarks/README.md, "The floor")."""
        if not self.floor_bytes:
            return None
        return self.median_s * self.copy_bytes_per_s / self.floor_bytes


def _timings(records: Iterable[Mapping], kind: str) -> Iterable[Tuple[Mapping, Mapping]]:
    """``(extra_info, stats)`` of the records of ``kind`` that ran (have a median)."""
    for record in records:
        info = record.get("extra_info") or {}
        stats = record.get("stats") or {}
        if info.get("kind") == kind and stats.get("median"):
            yield info, stats


def _timing(info: Mapping, stats: Mapping) -> Dict:
    """The fields every kind of result has."""
    return {
        "workload": info["workload"],
        "implementation": info["implementation"],
        "median_s": float(stats["median"]),
        "rounds": int(stats.get("rounds", 0)),
    }


def throughput_results(records: Iterable[Mapping]) -> List[Result]:
    """The workload timings among pytest-benchmark records (skipping unrun ones)."""
    return [
        Result(
            **_timing(info, stats),
            rois=int(info["rois"]),
            bytes=int(info["bytes"]),
            copy_bytes_per_s=float(info["copy_bytes_per_s"]),
            sweep=info.get("sweep"),
            value=info.get("value"),
            floor_bytes=info.get("floor_bytes"),
            compared_with=info.get("compared_with"),
            target_speedup=info.get("target_speedup"),
            max_abs_error=info.get("max_abs_error"),
            rel_error=info.get("rel_error"),
            grad_rel_error=info.get("grad_rel_error"),
            traffic=info.get("traffic"),
            direction=info.get("direction"),
        )
        for info, stats in _timings(records, THROUGHPUT)
    ]


def jit_records(records: Iterable[Mapping]) -> List[Dict]:
    """The first-call (JIT) measurements' ``extra_info``."""
    return [dict(r["extra_info"]) for r in records if (r.get("extra_info") or {}).get("kind") == JIT]


def speedups(results: Iterable[Result], baseline: Optional[str] = None) -> Dict[Tuple[str, str], Optional[float]]:
    """``(workload, implementation) -> baseline median / its median`` (None without a baseline);
    ``baseline`` defaults to :func:`baseline_name`."""
    results = list(results)
    baseline = baseline or baseline_name()
    base = {r.workload: r.median_s for r in results if r.implementation == baseline}
    return {
        (r.workload, r.implementation): (base[r.workload] / r.median_s if r.workload in base else None)
        for r in results
    }


@dataclass(frozen=True)
class PairRow:
    """One dtype pair of one implementation: its median against the compared workload's, same run."""

    workload: str
    compared_with: str
    implementation: str
    median_ms: float
    compared_median_ms: float
    speedup: float  # compared median / this median: > 1 is faster
    target_speedup: Optional[float] = None


def pair_rows(results: Iterable[Result]) -> List[PairRow]:
    """A row per result of a dtype pair whose compared workload ran on the same implementation."""
    results = list(results)
    median = {(r.workload, r.implementation): r.median_s for r in results}
    return [
        PairRow(r.workload, r.compared_with, r.implementation, r.median_s * 1e3,
                median[(r.compared_with, r.implementation)] * 1e3,
                median[(r.compared_with, r.implementation)] / r.median_s, r.target_speedup)
        for r in results
        if r.compared_with and (r.compared_with, r.implementation) in median
    ]


PAIR_HEADER = ("workload", "compared with", "implementation", "median ms", "its median ms", "speedup", "target")


def pair_cells(row: PairRow) -> Tuple[str, ...]:
    target = "-" if row.target_speedup is None else (
        f">= {row.target_speedup:g}x: " + ("met" if row.speedup >= row.target_speedup else "NOT met"))
    return (row.workload, row.compared_with, row.implementation, f"{row.median_ms:.2f}",
            f"{row.compared_median_ms:.2f}", f"{row.speedup:.2f}x", target)


@dataclass(frozen=True)
class SweepRow:
    """One RoI count of one sweep family: ours and the baseline, same run."""

    family: str  # p2, fpn-pooler, mask-pooler (``Workload.sweep`` less its ``rois-``)
    rois: int
    ours_ms: float
    baseline_ms: Optional[float]

    @property
    def speedup(self) -> Optional[float]:
        return None if self.baseline_ms is None else self.baseline_ms / self.ours_ms


def roi_sweep_rows(results: Iterable[Result], ours: Optional[str] = None, baseline: Optional[str] = None) -> List[SweepRow]:
    """The RoI-count sweeps (``sweep`` ``rois-*``): a row per family and count that ``ours`` ran, in run order
    (defaults: :func:`ours_name`, :func:`baseline_name`)."""
    ours, baseline = ours or ours_name(), baseline or baseline_name()
    results = [r for r in results if r.sweep and r.sweep.startswith("rois-")]
    base = {r.workload: r.median_s for r in results if r.implementation == baseline}
    return [
        SweepRow(r.sweep[len("rois-"):], int(r.value), r.median_s * 1e3,
                 base[r.workload] * 1e3 if r.workload in base else None)
        for r in results if r.implementation == ours
    ]


def sweep_header() -> Tuple[str, ...]:
    return ("workload", "RoIs", f"{ours_name()} ms", f"{baseline_name()} ms", "speedup")


def sweep_cells(row: SweepRow) -> Tuple[str, ...]:
    return (row.family, str(row.rois), f"{row.ours_ms:.1f}",
            "-" if row.baseline_ms is None else f"{row.baseline_ms:.1f}",
            "-" if row.speedup is None else f"{row.speedup:.2f}x")


def derived_info(results: Iterable[Result], baseline: Optional[str] = None) -> Dict[Tuple[str, str], Dict]:
    """The figures added to each timing's ``extra_info`` at the end of a run."""
    results = list(results)
    baseline = baseline or baseline_name()
    ratio = speedups(results, baseline)
    return {
        (r.workload, r.implementation): {
            "rois_per_s": r.rois_per_s,
            "bytes_per_s": r.bytes_per_s,
            "times_floor": r.times_floor,
            f"speedup_over_{baseline}": ratio[(r.workload, r.implementation)],
        }
        for r in results
    }


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    workload: str
    implementation: str
    median_ms: float
    rounds: int
    rois_per_s: float
    gb_per_s: float
    speedup: Optional[float]
    times_floor: Optional[float] = None
    max_abs_error: Optional[float] = None
    rel_error: Optional[float] = None
    grad_rel_error: Optional[float] = None


def summary_rows(results: Iterable[Result], baseline: Optional[str] = None) -> List[Row]:
    """Workload x implementation rows, in run order."""
    results = list(results)
    ratio = speedups(results, baseline)
    return [
        Row(
            r.workload,
            r.implementation,
            r.median_s * 1e3,
            r.rounds,
            r.rois_per_s,
            r.bytes_per_s / 1e9,
            ratio[(r.workload, r.implementation)],
            r.times_floor,
            r.max_abs_error,
            r.rel_error,
            r.grad_rel_error,
        )
        for r in results
    ]


def header() -> Tuple[str, ...]:
    """The summary table's header (:func:`row_cells`)."""
    return ("workload", "implementation", "median ms", "rounds", "RoIs/s", "GB/s", "x floor",
            f"speedup vs {baseline_name()}", "max abs error", "rel error", "grad rel error")


def error_cell(value: Optional[float]) -> str:
    """An error in a table: two significant digits, '-' when not computed."""
    return "-" if value is None else f"{value:.1e}"


def row_cells(row: Row) -> Tuple[str, ...]:
    speedup = "-" if row.speedup is None else f"{row.speedup:.2f}x"
    return (
        row.workload,
        row.implementation,
        f"{row.median_ms:.2f}",
        str(row.rounds),
        f"{row.rois_per_s:,.0f}",
        f"{row.gb_per_s:.2f}",
        "-" if row.times_floor is None else f"{row.times_floor:.1f}",
        speedup,
        error_cell(row.max_abs_error),
        error_cell(row.rel_error),
        error_cell(row.grad_rel_error),
    )


def text_table(header: Tuple[str, ...], lines: List[Tuple[str, ...]]) -> str:
    """A plain fixed-width table."""
    widths = [max(len(c) for c in column) for column in zip(header, *lines)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), rule] + [fmt.format(*line) for line in lines])


def markdown_table(header: Tuple[str, ...], lines: List[Tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


JIT_HEADER = (
    "measurement", "numba cache", "import torch s", "then import impl s", "first forward s", "first backward s",
    "impl import + first call s", "every variant s", "slowest single call s",
)


def jit_cells(info: Mapping) -> Tuple[str, ...]:
    return (
        info["workload"],
        info["cache"],
        f"{info.get('torch_import_s', float('nan')):.2f}",
        f"{info['import_s']:.2f}",
        f"{info['first_forward_s']:.2f}",
        f"{info['first_backward_s']:.2f}",
        f"{info['import_s'] + info['first_forward_s'] + info['first_backward_s']:.2f}",
        f"{info.get('every_variant_s', info.get('other_variants_s', float('nan'))):.2f}",
        f"{info['slowest_call_s']:.2f} ({info['slowest_call']})" if "slowest_call_s" in info else "-",
    )


def load_records(path: Path) -> Tuple[List[Dict], Dict]:
    """A pytest-benchmark JSON file -> (benchmark records, the whole document)."""
    document = json.loads(Path(path).read_text())
    return document.get("benchmarks", []), document


def row_dicts(rows: Iterable[Row]) -> List[Dict]:
    return [asdict(r) for r in rows]


# --- model workloads (Mask R-CNN with each MultiScaleRoIAlign) ----------------------


@dataclass(frozen=True)
class ModelResult:
    """One (model workload, pooler implementation) timing: a step's median and its time in RoI pooling."""

    workload: str
    implementation: str
    median_s: float
    rounds: int
    pool_s: Dict[str, float]  # per step: "box forward", "box backward", "mask forward", ... -> seconds
    pool_share: float  # time in the poolers / time of the steps, over the timed rounds
    rois: Dict[str, float]  # per step: "box", "mask" -> RoIs pooled
    images: str  # "2x480x640"


def model_results(records: Iterable[Mapping]) -> List[ModelResult]:
    """The model workload timings among pytest-benchmark records."""
    return [
        ModelResult(
            **_timing(info, stats),
            pool_s=dict(info["pool_s"]),
            pool_share=float(info["pool_share"]),
            rois=dict(info["rois"]),
            images="x".join(str(n) for n in [info["images"], *info["image_size"]]),
        )
        for info, stats in _timings(records, MODEL)
    ]


@dataclass(frozen=True)
class ModelRow:
    """One line of the model table."""

    workload: str
    implementation: str
    images: str
    median_s: float
    rounds: int
    rois: str
    pool_ms: float
    pool_share: float
    speedup: Optional[float]


def model_rows(results: Iterable[ModelResult], baseline: Optional[str] = None) -> List[ModelRow]:
    """Model workload x pooler rows, in run order, with the speedup of the whole step over ``baseline``."""
    results = list(results)
    ratio = speedups(results, baseline)
    return [
        ModelRow(
            r.workload,
            r.implementation,
            r.images,
            r.median_s,
            r.rounds,
            " / ".join(f"{r.rois.get(kind, 0):.0f}" for kind in ("box", "mask")),
            1e3 * sum(r.pool_s.values()),
            r.pool_share,
            ratio[(r.workload, r.implementation)],
        )
        for r in results
    ]


def model_derived_info(results: Iterable[ModelResult], baseline: Optional[str] = None) -> Dict[Tuple[str, str], Dict]:
    """The speedup of each model timing, added to its ``extra_info`` at the end of a run."""
    baseline = baseline or baseline_name()
    return {key: {f"speedup_over_{baseline}": value} for key, value in speedups(results, baseline).items()}


def model_header() -> Tuple[str, ...]:
    """The model table's header (:func:`model_cells`)."""
    return ("workload", "implementation", "images", "median s", "rounds", "RoIs box / mask", "pooling ms",
            "pooling share", f"step speedup vs {baseline_name()}")


def model_cells(row: ModelRow) -> Tuple[str, ...]:
    return (
        row.workload,
        row.implementation,
        row.images,
        f"{row.median_s:.2f}",
        str(row.rounds),
        row.rois,
        f"{row.pool_ms:.0f}",
        f"{row.pool_share:.1%}",
        "-" if row.speedup is None else f"{row.speedup:.2f}x",
    )


TRAFFIC_HEADER = ("workload", "paths (per level)", "map MB touched", "tap MB fetched", "fetches per touched byte",
                  "conversion MB", "output MB", "median ms", "x floor")


def traffic_cells(r: Result) -> Tuple[str, ...]:
    """One forward workload of ours: its modelled traffic (benchmarks/traffic.py) beside its median."""
    moved = r.traffic["bytes"]
    paths = "/".join(p or "-" for p in r.traffic["paths"])
    reuse = moved["tap"] / moved["map"] if moved["map"] else 0.0
    return (r.workload, paths, f"{moved['map'] / 1e6:.1f}", f"{moved['tap'] / 1e6:.1f}", f"{reuse:.1f}",
            f"{moved['convert'] / 1e6:.1f}", f"{moved['output'] / 1e6:.1f}", f"{r.median_s * 1e3:.2f}",
            "-" if r.times_floor is None else f"{r.times_floor:.1f}")


def traffic_results(results: Iterable[Result]) -> List[Result]:
    """Our forward-only timings that carry the traffic model, in run order."""
    return [r for r in results if r.traffic and r.direction == "fwd"]
