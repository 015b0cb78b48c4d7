"""Argument checks of our RoIAlign: front-end checks and the data checks the operator runs.

Front end (``impl.roi_align``, ``impl.Pooler``): the kind, shape, dtype and
device of every argument, from metadata only, so they cost nothing under
``torch.compile`` and ``torch.export``. The functions taking tensors are
TorchScript-compatible (``torch.jit.script`` of ``impl.RoIAlign``); Python
number checks are skipped when scripting, where annotations already type them.

Inside the operator (``check_roi_values``, on the CPU kernel's float64 copy
of the RoIs): finite coordinates, batch indices that are integers in
``[0, N)``, levels in range, adaptive grids of bounded size. These need the
data, so they live in the kernel, where they break no graph.

Each check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong
value, shape or device) naming the argument and, for boxes, the first
offending row. After them the kernels can trust every index they compute.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

BoxesArg = Union[Tensor, List[Tensor]]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Adaptive sampling takes ceil(roi_size / pooled) samples per bin and axis;
# past this many the work is unbounded (a 1e30-pixel box), so it is rejected.
MAX_GRID = 1 << 16


def output_size_pair(output_size) -> Tuple[int, int]:
    """``int`` or ``(h, w)`` -> ``(h, w)`` of positive Python ints."""
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {output_size!r}")
        pair = tuple(output_size)
    else:
        pair = (output_size, output_size)
    for side in pair:
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise TypeError(f"output_size must hold ints, got {output_size!r}")
        if side <= 0:
            raise ValueError(f"output_size must be positive, got {output_size!r}")
    return pair[0], pair[1]


def is_finite_number(value) -> bool:
    """``math.isfinite`` as comparisons (False for NaN and infinities), which ``torch.compile`` can
    trace when ``value`` is symbolic (a module's float attribute under ``dynamic=True``)."""
    return -math.inf < value < math.inf


def check_spatial_scale(spatial_scale) -> float:
    """A finite, positive ``spatial_scale`` as a Python float."""
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"spatial_scale must be a number, got {type(spatial_scale).__name__}")
    scale = float(spatial_scale)
    if not is_finite_number(scale) or scale <= 0.0:
        raise ValueError(f"spatial_scale must be finite and positive, got {spatial_scale!r}")
    return scale


def check_sampling_ratio(sampling_ratio) -> int:
    """``sampling_ratio`` as an int; ``<= 0`` means adaptive."""
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, numbers.Integral):
        raise TypeError(f"sampling_ratio must be an int, got {sampling_ratio!r}")
    return int(sampling_ratio)


def check_features(input: Tensor, what: str = "input", cpu_only: bool = True) -> None:
    """``input`` must be a ``[N, C, H, W]`` floating tensor (any size may be 0), on the CPU (or meta)
    unless ``cpu_only`` is False."""
    if not torch.jit.is_scripting():
        if not isinstance(input, Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"{what} must have shape [N, C, H, W], got shape {list(input.shape)}")
    if input.dtype not in [torch.float16, torch.bfloat16, torch.float32, torch.float64]:  # FLOAT_DTYPES
        raise TypeError(f"{what} dtype must be float16, bfloat16, float32 or float64, got {input.dtype}")
    if cpu_only and input.device.type != "cpu" and input.device.type != "meta":
        raise ValueError(f"impl.roi_align runs on the CPU; {what} is on {input.device}")


def rois_from_boxes(boxes: BoxesArg, input: Tensor) -> Tensor:
    """Boxes as ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` of ``input``'s dtype and device.

    ``boxes`` is either that tensor or a list of per-image ``Tensor[L, 4]``
    (image ``i`` gets batch index ``i``). Shapes, dtypes and devices are
    checked here; the values inside the operator (:func:`check_roi_values`).
    """
    if isinstance(boxes, Tensor):
        _check_box_tensor(boxes, input, 5, "boxes")
        return boxes
    if not torch.jit.is_scripting():
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
        for i, per_image in enumerate(boxes):
            if not isinstance(per_image, Tensor):
                raise TypeError(f"boxes[{i}] must be a torch.Tensor, got {type(per_image).__name__}")
    if len(boxes) == 0:
        return input.new_zeros((0, 5))
    rows: List[Tensor] = []
    for i, per_image in enumerate(boxes):
        _check_box_tensor(per_image, input, 4, f"boxes[{i}]")
        rows.append(torch.cat([torch.full_like(per_image[:, :1], i), per_image], dim=1))
    return torch.cat(rows)


def _cpu_autocast_enabled() -> bool:
    """Whether CPU autocast is on; then the operators' autocast rule casts features and boxes alike
    (float32 unless float64), so boxes of another dtype are accepted, as torchvision's are.

    Always False in TorchScript, whose dtypes must match: a scripted
    ``torch.is_autocast_cpu_enabled()`` crashes the JIT's autocast pass
    (segfault, torch 2.14).
    """
    if torch.jit.is_scripting():
        return False
    return torch.is_autocast_enabled("cpu")


def _check_box_tensor(boxes: Tensor, input: Tensor, columns: int, what: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != columns:
        raise ValueError(f"{what} must have shape [K, {columns}], got shape {list(boxes.shape)}")
    if boxes.dtype != input.dtype and not _cpu_autocast_enabled():
        raise TypeError(f"{what} dtype {boxes.dtype} does not match input dtype {input.dtype}")
    if boxes.device != input.device:
        raise ValueError(f"{what} are on device {boxes.device} but input is on device {input.device}")


def check_roi_values(rois: np.ndarray, levels: np.ndarray, num_images: int, num_levels: int,
                     scales: Sequence[float], pooled: Tuple[int, int], sampling_ratio: int, aligned: bool) -> None:
    """The data checks, run by the operator on its float64 copy: ``rois`` ``[K, 5]``, ``levels`` ``[K]``.

    Every coordinate finite, every batch index an integer in ``[0, num_images)``,
    every level in ``[0, num_levels)``, and (adaptive sampling) no grid above
    :data:`MAX_GRID` samples per axis; else ``ValueError`` naming the first row.
    """
    if rois.shape[0] == 0:
        return
    bad = ~np.isfinite(rois).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"boxes row {row} has non-finite values: {rois[row].tolist()}")
    index = rois[:, 0]
    bad = (index != np.floor(index)) | (index < 0) | (index >= num_images)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"boxes row {row} has batch index {float(index[row])!r}; it must be an integer in [0, {num_images})")
    bad = (levels < 0) | (levels >= num_levels)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"levels[{row}] = {int(levels[row])} is not a level of {num_levels} feature maps")
    if sampling_ratio > 0:
        return
    bin_h, bin_w = bin_extents(rois, levels, scales, pooled, aligned)
    grid = np.maximum(bin_h, bin_w)  # samples per axis before ceil
    bad = grid > MAX_GRID
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"boxes row {row} ({rois[row].tolist()}) needs an adaptive sampling grid of {grid[row]:.3g} samples "
            f"per axis (limit {MAX_GRID}); pass a fixed sampling_ratio or a smaller box"
        )


def bin_extents(rois: np.ndarray, levels: np.ndarray, scales: Sequence[float], pooled: Tuple[int, int],
                aligned: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Each RoI's bin height and width in pixels of its level, before legacy mode's 1-pixel minimum:
    adaptive sampling takes their ceilings as its grid. ``rois`` ``[K, 5]`` float64, ``levels`` ``[K]``."""
    offset = 0.5 if aligned else 0.0
    scale = np.asarray(scales, dtype=np.float64)[levels]
    roi_w = (rois[:, 3] * scale - offset) - (rois[:, 1] * scale - offset)
    roi_h = (rois[:, 4] * scale - offset) - (rois[:, 2] * scale - offset)
    return roi_h / pooled[0], roi_w / pooled[1]


def samples_per_roi(rois: np.ndarray, levels: np.ndarray, scales: Sequence[float], pooled: Tuple[int, int],
                    sampling_ratio: int, aligned: bool) -> np.ndarray:
    """Bilinear samples each RoI takes (``pooled_h * pooled_w * grid_h * grid_w``, float64 ``[K]``),
    after :func:`check_roi_values`; for costs only."""
    if sampling_ratio > 0:
        return np.full(rois.shape[0], float(pooled[0] * pooled[1] * sampling_ratio**2))
    bin_h, bin_w = bin_extents(rois, levels, scales, pooled, aligned)
    if not aligned:  # legacy mode's RoIs are at least 1 x 1 pixel
        bin_h, bin_w = np.maximum(bin_h, 1.0 / pooled[0]), np.maximum(bin_w, 1.0 / pooled[1])
    return pooled[0] * pooled[1] * np.maximum(np.ceil(bin_h), 0.0) * np.maximum(np.ceil(bin_w), 0.0)
