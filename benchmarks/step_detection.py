"""Steps and regressions in one series of measurements, by asv's step detection (``asv.step_detect``).

A series is, per commit in history order, the values of that commit's runs (one or more), **lower
is better** (seconds, or our time over torchvision's from the same run). As asv does with its
results, each commit counts with its median, weighted by its number of runs.

The fit is asv's: ``asv.step_detect.solve_potts``, the exact piecewise-constant L1 fit (a segment
costs its weighted absolute deviations plus a penalty ``gamma``), then
``asv.step_detect.detect_regressions``, which keeps the upward steps that still explain the latest
level against the best earlier one (a slowdown later undone is not a regression). The penalty is
ours: ``gamma = PENALTY * sigma * ln(runs)``, with ``sigma`` the noise of one run (:func:`noise_sigma`).
asv's own automatic penalty (``detect_steps``) missed a 15% step under 2% noise in 62 of 100 seeded
series when it sat at the last of 16 commits of 3 runs each, and 36 of 100 with 20 single runs and
the step at commit 14; this penalty found all of them, and no step in 300 series of pure noise
(``benchmarks/README.md``, "Tracking").

Each step is reported with its size and a confidence: the change of level over its standard error,
``z = |level_after - level_before| / (sigma * sqrt(1/n_before + 1/n_after))``, ``n`` counting the runs
of each segment.

asv is an optional dependency (``pip install 'roialign-suite[track]'``); only this module imports it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import List, Sequence

# Pairs of reruns needed before their spread is trusted as the noise (3 runs of one commit give 3: too few).
MIN_PAIRS = 6


def _asv():
    try:
        from asv import step_detect
    except ImportError:
        raise RuntimeError("step detection needs asv: pip install 'roialign-suite[track]' (asv==0.6.6)") from None
    return step_detect


@dataclass(frozen=True)
class Step:
    """A change of level between commits ``before`` and ``after`` (indices into the history)."""

    before: int  # last commit of the segment before the step
    after: int  # first commit of the segment after it
    level_before: float  # the fitted level (asv: the segment's weighted median), the series' unit
    level_after: float
    n_before: int  # runs in each segment
    n_after: int
    confidence: float  # z: the change over its standard error (module docstring); inf without noise

    @property
    def change(self) -> float:
        """Relative change of level, ``level_after / level_before - 1``: > 0 is slower (worse)."""
        return self.level_after / self.level_before - 1.0


# gamma = PENALTY * sigma * ln(runs): 3 gave no step on 300 pure-noise series and found every 15% step
# under 2% noise with >= 3 runs after it (2: a step in 7 noise series; 4: missed 5 of 200 last-commit
# steps). The series: benchmarks/README.md, "Step detection".
PENALTY = 3.0


def noise_sigma(groups: Sequence[Sequence[float]]) -> float:
    """The noise of one run (a standard deviation, the series' unit): the larger of the spread between
    reruns of one commit (the mean absolute difference of every pair of runs of a commit, times
    sqrt(pi)/2, from at least MIN_PAIRS pairs; a mean, so heavy tails count) and the spread of
    successive commits' medians (median absolute difference / (0.6745 sqrt 2), robust to the steps
    themselves), so noise between commits larger than within them is not missed."""
    pairs = [abs(a - b) for g in groups for i, a in enumerate(g) for b in g[i + 1:]]
    sigma_within = math.sqrt(math.pi) / 2 * sum(pairs) / len(pairs) if len(pairs) >= MIN_PAIRS else 0.0
    medians = [statistics.median(g) for g in groups]
    differences = [abs(b - a) for a, b in zip(medians, medians[1:])]
    sigma_between = statistics.median(differences) / (0.6745 * math.sqrt(2)) if differences else 0.0
    return max(sigma_within, sigma_between)


def _fit(groups: Sequence[Sequence[float]], sigma: float):
    """asv's segments ``(left, right, level, min, mean abs deviation)`` over the commits."""
    medians = [statistics.median(g) for g in groups]
    weights = [len(g) for g in groups]
    runs = sum(weights)
    gamma = PENALTY * sigma * math.log(runs) if sigma > 0 else 1e-12 * max(map(abs, medians), default=1.0)
    rights, levels, _ = _asv().solve_potts(medians, weights, gamma)
    segments, left = [], 0
    for right, level in zip(rights, levels):
        values = [v for g in groups[left:right] for v in g]
        segments.append((left, right, level, min(values), sum(abs(v - level) for v in values) / len(values)))
        left = right
    return segments


def find_steps(groups: Sequence[Sequence[float]]) -> List[Step]:
    """Every step of asv's piecewise-constant fit; ``groups[i]`` holds the values of the i-th commit in
    history order (one per run, at least one). Indices in the steps are commit indices."""
    if len(groups) < 2:
        return []
    sigma = noise_sigma(groups)
    segments = _fit(groups, sigma)
    steps = []
    for (l0, r0, v0, _, _), (l1, r1, v1, _, _) in zip(segments, segments[1:]):
        n0, n1 = sum(map(len, groups[l0:r0])), sum(map(len, groups[l1:r1]))
        error = sigma * math.sqrt(1.0 / n0 + 1.0 / n1)
        z = abs(v1 - v0) / error if error > 0 else math.inf
        steps.append(Step(r0 - 1, l1, v0, v1, n0, n1, z))
    return steps


def find_regressions(groups: Sequence[Sequence[float]], threshold: float, min_confidence: float) -> List[Step]:
    """The upward steps that asv's ``detect_regressions`` keeps at ``threshold`` (relative, e.g. 0.1: they
    explain the latest level against the best earlier one) and that are at least ``threshold`` large and
    ``min_confidence`` sure (z)."""
    steps = find_steps(groups)
    if not steps:
        return []
    _, _, positions = _asv().detect_regressions(_fit(groups, noise_sigma(groups)), threshold=threshold)
    jumps = {before for before, _after, _v_before, _v_after in positions or ()}
    return [s for s in steps
            if s.before in jumps and s.change >= threshold and s.confidence >= min_confidence]
