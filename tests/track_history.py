"""Synthetic histories for the tracking tests: pytest-benchmark runs with seeded noise, recorded by the
real recorder (``track.run_record``) into a store."""
from __future__ import annotations

import datetime as dt
import hashlib
import random
from pathlib import Path
from typing import Callable, Dict, List

from roialign_suite.benchmarks import track

BASELINE, OURS = "torchvision-cpu", "numba"
WORKLOADS = {"box-head-p2-fwd": (2.0e-3, 0.5e-3), "box-head-fpn-pooler-fwd": (6.0e-3, 2.0e-3)}  # baseline s, ours s
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def commit_id(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


def machine_info(cpu: str, cores: int) -> Dict:
    return {"system": "Linux", "python_version": "3.11.7", "machine": "x86_64",
            "cpu": {"brand_raw": cpu, "count": cores, "arch_string_raw": "x86_64"}}


def benchmark_json(commit: int, medians: Dict, machine: Dict) -> Dict:
    """A pytest-benchmark run: ``medians[(workload, implementation)]`` in seconds."""
    rows = [{"stats": {"median": m, "rounds": 5, "iqr": m * 0.02, "stddev": m * 0.02},
             "extra_info": {"kind": "throughput", "workload": w, "implementation": i, "rois": 16, "bytes": 1,
                            "copy_bytes_per_s": 1.0, "channels": 8}}
            for (w, i), m in medians.items()]
    return {"machine_info": machine, "benchmarks": rows,
            "commit_info": {"id": commit_id(commit), "time": (START + dt.timedelta(hours=commit)).isoformat(), "dirty": False}}


def record_history(store: Path, seed: int, runs_per_commit: List[int], slowdown: Callable[[int], float],
                   machine: Dict = None, scale: float = 1.0, noise: float = 0.02, first_run: int = 0) -> List[Path]:
    """Record ``runs_per_commit[i]`` runs of commit i; our kernel is ``slowdown(i)`` times slower there; every
    median gets independent Gaussian noise of relative size ``noise`` (seeded); ``scale`` slows the machine;
    ``first_run`` numbers the runs on (their recording times, so a later call adds runs)."""
    rng = random.Random(seed)
    machine = machine or machine_info("Synthetic CPU A", 4)
    written = []
    for i, runs in enumerate(runs_per_commit):
        for n in range(runs):
            medians = {}
            for w, (base, ours) in WORKLOADS.items():
                medians[(w, BASELINE)] = base * scale * (1 + rng.gauss(0, noise))
                medians[(w, OURS)] = ours * scale * slowdown(i) * (1 + rng.gauss(0, noise))
            recorded = (START + dt.timedelta(hours=i, minutes=first_run + n + 1)).isoformat()
            record = track.run_record(benchmark_json(i, medians, machine), recorded=recorded, baseline=BASELINE)
            written.append(track.write_run(record, store))
    return written
