"""Which forward path pools each level of a contiguous (NCHW) map: a cost model measured on the machine.

Our forward has two paths, equal bit for bit (``properties/test_forward_paths.py``):

- **gather**: :func:`impl.kernels.roi_align_forward_nchw` reads each sample's
  four taps straight from the channel planes. Nothing is copied, so its cost
  follows the RoIs: ``GATHER_NS`` per tap, where a level's taps are the sum
  over its RoIs of samples (``pooled_h * pooled_w * grid_h * grid_w``) times
  channels.
- **convert**: copy the whole level to channels-last once
  (:func:`impl.kernels.nchw_to_nhwc`, ``CONVERT_NS`` per byte of the map),
  then :func:`impl.kernels.roi_align_forward_nhwc` reads each tap's channels
  as one contiguous vector (``NHWC_NS`` per tap).

A level is converted when that is predicted no dearer: when its taps per
map byte reach ``CONVERT_NS / (GATHER_NS - NHWC_NS)``. A channels_last map
needs no conversion, so it takes the NHWC kernel whenever it has RoIs. The
constants are ns of wall time on the 2-core development machine (AMD EPYC
VM, float32, 2 threads); only their ratios steer the choice.
``roialign-suite crossover`` (``benchmarks/crossover.py``) times both paths
forced over a range of RoI counts, fits the constants and plots the
measured crossover against the predicted one.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import numpy as np

# Fitted by `roialign-suite crossover` (P2 box head, float32, 2 threads; 2026-12-07, after the
# NCHW gather's channel-inner loop and the output faulted in first): predicted crossover 184 RoIs,
# measured between 128 and 256.
GATHER_NS = 2.08  # per tap (sample x channel), NCHW gather
NHWC_NS = 0.55  # per tap, NHWC kernel on a channels-last map
CONVERT_NS = 0.114  # per byte of the map copied to channels-last

PATHS = ("auto", "gather", "convert")


class _Forced(threading.local):
    path = "auto"


_forced = _Forced()


@contextlib.contextmanager
def forward_path(path: str) -> Iterator[None]:
    """Within the block, this thread's forwards take ``path``: ``"gather"``, ``"convert"`` or ``"auto"``
    (the cost model). For tests and the crossover benchmark; results are the same on every path."""
    if path not in PATHS:
        raise ValueError(f"forward path must be one of {PATHS}, got {path!r}")
    previous, _forced.path = _forced.path, path
    try:
        yield
    finally:
        _forced.path = previous


def convert_levels(map_bytes: Sequence[int], taps: Sequence[float], channels_last: Sequence[bool]) -> np.ndarray:
    """Per level, whether the forward pools it with the NHWC kernel (else gathers from NCHW).

    ``map_bytes[l]``: the bytes of level ``l``'s map; ``taps[l]``: its RoIs'
    samples times channels; ``channels_last[l]``: whether the map already is
    (then the NHWC kernel costs no copy). Under :func:`forward_path` every
    level takes the forced path.
    """
    if _forced.path != "auto":
        return np.full(len(map_bytes), _forced.path == "convert")
    map_bytes = np.asarray(map_bytes, dtype=np.float64)
    taps = np.asarray(taps, dtype=np.float64)
    copy = np.where(np.asarray(channels_last, dtype=bool), 0.0, CONVERT_NS * map_bytes)
    return copy + NHWC_NS * taps <= GATHER_NS * taps
