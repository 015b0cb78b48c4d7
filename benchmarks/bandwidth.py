"""Bytes moved by a workload (a model) and the machine's measured copy bandwidth.

The model counts compulsory traffic, RoIs taken one at a time:

- forward reads, per RoI, the feature pixels its samples can touch: along
  each axis the pixels from the first sample's low neighbour to the last
  sample's high neighbour, clamped to the map and capped at two per sample
  row (bilinear taps), times ``C`` channels; and writes ``[K, C, h, w]``.
- backward reads the ``[K, C, h, w]`` output gradient, reads and writes the
  same per-RoI footprint of the input gradient, and writes the whole
  ``[N, C, H, W]`` input gradient once (zero fill).

Elements are of the workload's dtype (4 bytes float32, 2 bfloat16).

Cache reuse between RoIs is not credited and taps re-reading a pixel are not
charged; "GB/s" in the tables = modelled bytes / median time.

The floor (:func:`floor_bytes`, defined in ``benchmarks/README.md``) is the
other count: the bytes any implementation must move, timed at the bandwidth
of a ``torch`` copy of that many bytes (:func:`copy_bandwidth`, half read,
half written, both counted; at most :data:`MAX_COPY_BYTES`).
The extractor's fully-connected layers are not in the model.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Sequence

import torch
from torch import Tensor

from roialign_suite.benchmarks.workloads import Inputs, Workload
from roialign_suite.reference.roi_align import roi_geometry

FLOAT32_BYTES = 4


def axis_pixels(start: float, length: float, bins: int, grid: int, size: int) -> int:
    """Pixels along one axis that ``bins * grid`` evenly spaced samples can touch."""
    if grid <= 0:
        return 0
    step = length / (bins * grid)
    first = start + 0.5 * step
    last = start + length - 0.5 * step
    low = min(max(math.floor(first), 0), size - 1)
    high = min(max(math.floor(last) + 1, 0), size - 1)
    return min(high - low + 1, 2 * bins * grid)


def footprint_pixels(rois: Tensor, height: int, width: int, pooled: int, scale: float, sampling_ratio: int, aligned: bool) -> int:
    """Sum over ``rois`` (``[K, 5]``, image pixels) of the pixels each one's samples can touch."""
    total = 0
    for roi in rois[:, 1:].double().tolist():
        g = roi_geometry(roi, (pooled, pooled), scale, sampling_ratio, aligned)
        rows = axis_pixels(g.start_h, g.roi_h, pooled, g.grid_h, height)
        cols = axis_pixels(g.start_w, g.roi_w, pooled, g.grid_w, width)
        total += rows * cols
    return total


def _output_elements(workload: Workload) -> int:
    return workload.num_rois * workload.channels * workload.output_size**2


def _feature_elements(inputs: Inputs) -> int:
    return sum(f.numel() for f in inputs.features)


def bytes_moved(workload: Workload, inputs: Inputs, levels: Sequence[int]) -> int:
    """Modelled bytes of one timed call; ``levels[k]`` is RoI ``k``'s 0-based level."""
    levels = torch.as_tensor(levels)
    pooled = workload.output_size
    channels = workload.channels
    output = _output_elements(workload)
    touched = 0
    for level, feature in enumerate(inputs.features):
        height, width = feature.shape[-2:]
        rois = inputs.rois[levels == level]
        touched += footprint_pixels(
            rois, height, width, pooled, workload.scales[level], workload.sampling_ratio, workload.aligned
        )
    elements = touched * channels + output
    if workload.backward:
        elements += output + 2 * touched * channels + _feature_elements(inputs)  # the last: zero fill
    return elements * workload.torch_dtype.itemsize


def floor_bytes(workload: Workload, inputs: Inputs) -> int:
    """The floor's traffic: every level's features read once and the output written once.

    Forward+backward adds the output gradient read once and the input
    gradient written once. No implementation can move less, so ``floor_bytes
    / copy_bandwidth(floor_bytes)`` is the machine's floor for the call, and
    ``median / floor`` ("x floor") says how far a kernel is from it.
    """
    features = _feature_elements(inputs)
    output = _output_elements(workload)
    elements = features + output
    if workload.backward:
        elements += output + features
    return elements * workload.torch_dtype.itemsize


# Copies past this many bytes are measured at this size: far beyond the
# last-level cache, streaming bandwidth no longer depends on the size, and
# allocating gigabytes per workload would cost more than the timings.
MAX_COPY_BYTES = 512 << 20


def copy_bandwidth(nbytes: int, threads: int) -> float:
    """Bytes/s of a ``torch`` copy moving ``nbytes`` in all (capped at :data:`MAX_COPY_BYTES`).

    Call it under the thread count being measured; ``threads`` only keys the cache.
    """
    return _copy_bandwidth(min(nbytes, MAX_COPY_BYTES), threads)


@functools.lru_cache(maxsize=None)
def _copy_bandwidth(nbytes: int, threads: int, repeats: int = 3) -> float:
    """Best of ``repeats`` ``dst.copy_(src)``, half of ``nbytes`` read and half written."""
    elements = max(nbytes // (2 * FLOAT32_BYTES), 1024)
    src = torch.empty(elements)
    dst = torch.empty(elements)
    dst.copy_(src)  # faults both buffers' pages in
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * elements * FLOAT32_BYTES / best
