"""A deliberately slowed ``impl.roi_align``, to watch the gate fail.

    roialign-suite gate --run --target roialign_suite.benchmarks.slowed:roi_align

Each forward call sleeps ``ROIALIGN_SLOWDOWN - 1`` (default 3) times its own
duration after computing the correct result, so it is ``ROIALIGN_SLOWDOWN``
times slower than ours without loading the CPU (the backward is untouched).
"""
from __future__ import annotations

import os
import time

from roialign_suite import impl


def slowdown() -> float:
    return float(os.environ.get("ROIALIGN_SLOWDOWN", "4"))


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """``impl.roi_align``, ``slowdown()`` times slower."""
    start = time.perf_counter()
    out = impl.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    time.sleep((slowdown() - 1.0) * (time.perf_counter() - start))
    return out
