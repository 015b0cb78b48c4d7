"""Memory traffic of our forward, path by path: a model of what each level's pass reads and writes.

For one forward call and each pyramid level with RoIs, the path our cost
model picks (``impl/cost_model.py``): ``gather`` (taps read straight from
the NCHW planes), ``convert`` (the level copied to channels-last, then the
NHWC kernel) or ``nhwc`` (a channels_last map, no copy). Per level, in bytes:

- ``tap``: what the kernel loads for its taps, every sample's four taps
  fetched afresh (as both kernels do), ``C`` channels each; taps of samples
  outside the map are not loaded.
- ``map``: the distinct map bytes those taps touch, all the level's RoIs
  together: what memory must deliver at least once. NHWC: the touched
  pixels' channel vectors. NCHW: the touched 64-byte lines of every channel
  plane (a tap reads its whole line; planes taken as line-aligned).
- ``convert``: the conversion's copy, the level read and its channels-last
  copy written (``convert`` only).
- ``output``: the pooled output written.

``tap / map`` is how often each touched byte is fetched on average: the
reuse a traffic-following order could turn into cache hits
(``benchmarks/README.md``, "Traffic"). The model is exact for the taps
and counts; cache behaviour is not modelled.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from roialign_suite.benchmarks.workloads import Inputs, Workload
from roialign_suite.impl import ops
from roialign_suite.reference.roi_align import roi_geometry

LINE_BYTES = 64
KINDS = ("map", "tap", "convert", "output")


def axis_taps(start: float, bin_size: float, bins: int, grid: int, size: int) -> np.ndarray:
    """``[n, 2]`` (low, high) pixel of every sample along one axis that lies inside the map (torchvision's
    rules: ``-1 <= pos <= size``, clamped into ``[0, size - 1]``)."""
    if grid <= 0 or size <= 0:
        return np.zeros((0, 2), np.int64)
    steps = np.arange(bins)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid
    pos = (start + steps).ravel()
    pos = np.maximum(pos[(pos >= -1.0) & (pos <= size)], 0.0)
    low = np.minimum(np.floor(pos).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    return np.stack([low, high], axis=1)


def paths_of(workload: Workload, inputs: Inputs, levels: np.ndarray) -> List[str]:
    """Per level, the path our forward takes (``"gather"``, ``"convert"``, ``"nhwc"``): the forward's own choice
    (:func:`impl.ops.levels_to_convert`) on these inputs."""
    pooled = (workload.output_size, workload.output_size)
    convert = ops.levels_to_convert(inputs.features, inputs.rois.double().numpy(), levels, workload.scales, pooled,
                                    workload.sampling_ratio, workload.aligned)
    return ["nhwc" if ops.is_channels_last(f) else ("convert" if c else "gather")
            for f, c in zip(inputs.features, convert)]


def level_traffic(feature: torch.Tensor, rois: np.ndarray, workload: Workload, scale: float, path: str) -> Dict[str, int]:
    """Bytes by kind (:data:`KINDS`) of pooling ``rois`` (``[K, 5]`` float64, image pixels) from ``feature``
    (``[N, C, H, W]``) on ``path``."""
    n, channels, height, width = feature.shape
    element = feature.element_size()
    pooled = workload.output_size
    lines_per_row = -(-width * element // LINE_BYTES)
    touched = np.zeros((n, height, width if path != "gather" else lines_per_row), dtype=bool)
    taps = 0
    for roi in rois:
        g = roi_geometry(tuple(roi[1:]), (pooled, pooled), scale, workload.sampling_ratio, workload.aligned)
        ys = axis_taps(g.start_h, g.bin_h, pooled, g.grid_h, height)
        xs = axis_taps(g.start_w, g.bin_w, pooled, g.grid_w, width)
        taps += 4 * len(ys) * len(xs)
        columns = np.unique(xs) if path != "gather" else np.unique(xs * element // LINE_BYTES)
        touched[int(roi[0])][np.ix_(np.unique(ys), columns)] = True
    map_bytes = int(touched.sum()) * channels * (element if path != "gather" else LINE_BYTES)
    return {
        "map": map_bytes,
        "tap": taps * channels * element,
        "convert": 2 * feature.numel() * element if path == "convert" else 0,
        "output": len(rois) * channels * pooled * pooled * element,
    }


def forward_traffic(workload: Workload, inputs: Inputs, levels: Sequence[int]) -> Dict:
    """Our forward's modelled traffic on ``workload``: ``{"paths": [per level, or None without RoIs],
    "bytes": {kind: total over levels}}`` (``levels[k]``: RoI ``k``'s 0-based level)."""
    levels = np.asarray(levels, dtype=np.int64)
    rois = inputs.rois.double().numpy()
    paths = paths_of(workload, inputs, levels)
    totals = dict.fromkeys(KINDS, 0)
    used = []
    for level, (feature, path) in enumerate(zip(inputs.features, paths)):
        mine = rois[levels == level]
        if not len(mine):
            used.append(None)
            continue
        used.append(path)
        for kind, value in level_traffic(feature, mine, workload, workload.scales[level], path).items():
            totals[kind] += value
    return {"paths": used, "bytes": totals}
