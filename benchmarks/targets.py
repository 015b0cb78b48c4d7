"""The performance targets the report measures itself against (issue 22), and each one's measured figure.

A target is reported, never asserted (the CI gate is ``benchmarks/gate.toml``).
Each names a workload of ``benchmarks/workloads.py`` and one of three kinds:

- ``speedup``: the other implementation's median over ours, same run, at least ``goal``;
- ``floor``: our median over the floor (``benchmarks/README.md``, "The floor"), at most ``goal``;
- ``every-workload``: ``speedup`` on every workload both implementations ran, the lowest reported.

The other implementation is torchvision CPU (the registry's baseline) unless
the target names one. A target whose rows are not in the run (an ecosystem
kernel not installed, a workload not selected) is reported as not measured.
IPEX's targets are measured by ``tox -e ipex`` (``benchmarks/ipex.py``),
which prints them against the same goals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from roialign_suite.benchmarks import figures
from roialign_suite.benchmarks.workloads import ROI_COUNTS
from roialign_suite.implementations import ipex, registry

SPEEDUP, FLOOR, EVERY_WORKLOAD = "speedup", "floor", "every-workload"
# Ours at least this much faster than IPEX 2.8 (benchmarks/ipex.py prints it against this goal).
IPEX_SPEEDUP = 1.5


def rivals() -> List[str]:
    """The timed CPU built-ins other than ours and the baseline: the ecosystem's kernels, IPEX, torchvision's own
    Python version; ours is to be faster than each on every workload it supports."""
    return [i.name for i in registry.builtin()
            if i.device == "cpu" and i.not_timed is None and not (i.ours or i.baseline)]


@dataclass(frozen=True)
class Target:
    label: str
    kind: str
    goal: float
    workload: Optional[str] = None  # None for every-workload
    other: Optional[str] = None  # the implementation compared with; None: the baseline


def all_targets() -> List[Target]:
    targets = [
        Target("P2 forward, 1024 RoIs", SPEEDUP, 12, "box-head-p2-fwd"),
        Target("P2 forward, 4096 RoIs", SPEEDUP, 12, "sweep-rois-p2-4096-fwd"),
        Target("P2 forward, channels_last, 1024 RoIs", SPEEDUP, 20, "box-head-p2-channels-last-float32-fwd"),
        Target("FPN pooler forward, 1024 RoIs", SPEEDUP, 10, "box-head-fpn-pooler-fwd"),
        Target("mask-head pooler forward, 1024 RoIs", SPEEDUP, 10, "sweep-rois-mask-pooler-1024-fwd"),
        *[Target(f"{family} forward, {count} RoIs", SPEEDUP, 2, f"sweep-rois-{family}-{count}-fwd")
          for family in ("p2", "fpn-pooler", "mask-pooler") for count in ROI_COUNTS],
        Target("FPN pooler forward+backward, 1024 RoIs", SPEEDUP, 15, "box-head-fpn-pooler-fwdbwd"),
        Target("P2 forward within 3x of the floor", FLOOR, 3, "box-head-p2-fwd"),
        Target("P2 forward channels_last within 3x of the floor", FLOOR, 3, "box-head-p2-channels-last-float32-fwd"),
        Target("FPN pooler forward within 3x of the floor", FLOOR, 3, "box-head-fpn-pooler-fwd"),
        Target("FPN pooler forward channels_last within 3x of the floor", FLOOR, 3,
               "box-head-fpn-pooler-channels-last-float32-fwd"),
        *[Target(f"faster than {name} on every workload it ran", EVERY_WORKLOAD,
                 IPEX_SPEEDUP if name == ipex.NAME else 1, other=name) for name in rivals()],
    ]
    return targets


@dataclass(frozen=True)
class Measured:
    target: Target
    value: Optional[float]  # None: not measured in this run
    where: str = ""  # every-workload: the workload of the lowest speedup

    @property
    def met(self) -> Optional[bool]:
        if self.value is None:
            return None
        return self.value <= self.target.goal if self.target.kind == FLOOR else self.value >= self.target.goal


def measure(results: Iterable[figures.Result], targets: Optional[List[Target]] = None) -> List[Measured]:
    """Each target's figure in one run's results."""
    ours = figures.ours_name()
    median = {(r.workload, r.implementation): r for r in results}
    measured = []
    for target in targets or all_targets():
        other = target.other or figures.baseline_name()
        if target.kind == EVERY_WORKLOAD:
            ratios = [(o.median_s / median[(w, ours)].median_s, w) for (w, name), o in median.items()
                      if name == other and (w, ours) in median]
            lowest = min(ratios, default=None)
            measured.append(Measured(target, lowest and lowest[0], lowest[1] if lowest else ""))
            continue
        mine = median.get((target.workload, ours))
        if target.kind == FLOOR:
            measured.append(Measured(target, mine and mine.times_floor))
            continue
        theirs = median.get((target.workload, other))
        measured.append(Measured(target, theirs.median_s / mine.median_s if mine and theirs else None))
    return measured


HEADER = ("target", "workload", "goal", "measured", "met")


def cells(m: Measured) -> Tuple[str, ...]:
    t = m.target
    goal = f"<= {t.goal:g}x floor" if t.kind == FLOOR else f">= {t.goal:g}x"
    value = "not in this run" if m.value is None else (
        f"{m.value:.1f}x floor" if t.kind == FLOOR else f"{m.value:.2f}x")
    met = "-" if m.met is None else ("met" if m.met else "**missed**")
    return (t.label, t.workload or m.where or "-", goal, value, met)
