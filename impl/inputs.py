"""Argument checking shared by every RoIAlign front end in the suite.

Each check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong
value, shape or device) with a message that names the argument and, for boxes,
the first offending row. The kernels rely on these checks: after them every
batch index is an in-range integer and every coordinate is finite.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

BoxesArg = Union[Tensor, Sequence[Tensor]]

FLOAT_DTYPES = (torch.float32, torch.float64)
# What our kernels take (impl/storage.py); the halves are summed in float32.
FEATURE_DTYPES = (torch.float16, torch.bfloat16) + FLOAT_DTYPES

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
    return int(pair[0]), int(pair[1])


def check_spatial_scale(spatial_scale) -> float:
    """A finite, positive ``spatial_scale`` as a Python float."""
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"spatial_scale must be a number, got {type(spatial_scale).__name__}")
    scale = float(spatial_scale)
    if not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"spatial_scale must be finite and positive, got {spatial_scale!r}")
    return scale


def check_sampling_ratio(sampling_ratio) -> int:
    """``sampling_ratio`` as an int; ``<= 0`` means adaptive."""
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, numbers.Integral):
        raise TypeError(f"sampling_ratio must be an int, got {sampling_ratio!r}")
    return int(sampling_ratio)


def check_features(input: Tensor, dtypes=FEATURE_DTYPES) -> None:
    """``input`` must be a ``[N, C, H, W]`` floating tensor with N, H, W >= 1."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"input must have shape [N, C, H, W], got shape {tuple(input.shape)}")
    if input.dtype not in dtypes:
        names = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"input dtype must be one of {names}, got {input.dtype}")
    n, _, h, w = input.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"input must have N, H, W >= 1, got shape {tuple(input.shape)}")


def rois_from_boxes(boxes: BoxesArg, input: Tensor) -> Tensor:
    """Boxes as ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)``.

    ``boxes`` is either that tensor or a list of per-image ``Tensor[L, 4]``
    (image ``i`` gets batch index ``i``). The result has ``input``'s dtype and
    device; every coordinate is finite and every batch index is an integer in
    ``[0, N)``, or a ``ValueError`` names the first row that is not.
    """
    if isinstance(boxes, Tensor):
        _check_box_tensor(boxes, input, columns=5, what="boxes")
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, per_image in enumerate(boxes):
            if not isinstance(per_image, Tensor):
                raise TypeError(f"boxes[{i}] must be a torch.Tensor, got {type(per_image).__name__}")
            _check_box_tensor(per_image, input, columns=4, what=f"boxes[{i}]")
        if len(boxes) == 0:
            rois = input.new_zeros((0, 5))
        else:
            rois = torch.cat(
                [
                    torch.cat([torch.full_like(b[:, :1], i), b], dim=1)
                    for i, b in enumerate(boxes)
                ]
            )
    else:
        raise TypeError(
            "boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], "
            f"got {type(boxes).__name__}"
        )
    _check_box_values(rois, input.shape[0])
    return rois


def _check_box_tensor(boxes: Tensor, input: Tensor, columns: int, what: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != columns:
        raise ValueError(f"{what} must have shape [K, {columns}], got shape {tuple(boxes.shape)}")
    if boxes.dtype != input.dtype:
        raise TypeError(f"{what} dtype {boxes.dtype} does not match input dtype {input.dtype}")
    if boxes.device != input.device:
        raise ValueError(f"{what} are on {boxes.device} but input is on {input.device}")


def _check_box_values(rois: Tensor, num_images: int) -> None:
    if rois.shape[0] == 0:
        return
    finite = torch.isfinite(rois).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise ValueError(f"boxes row {row} has non-finite values: {rois[row].tolist()}")
    index = rois[:, 0]
    bad = (index != torch.floor(index)) | (index < 0) | (index >= num_images)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"boxes row {row} has batch index {index[row].item()!r}; "
            f"it must be an integer in [0, {num_images})"
        )


def check_adaptive_grid(rois: Tensor, pooled, spatial_scale: float, sampling_ratio: int, aligned: bool) -> None:
    """Reject RoIs whose adaptive grid would need more than ``MAX_GRID`` samples per axis."""
    if sampling_ratio > 0 or rois.shape[0] == 0:
        return
    offset = 0.5 if aligned else 0.0
    r = rois.detach().double()
    roi_w = (r[:, 3] * spatial_scale - offset) - (r[:, 1] * spatial_scale - offset)
    roi_h = (r[:, 4] * spatial_scale - offset) - (r[:, 2] * spatial_scale - offset)
    grid = torch.maximum(roi_h / pooled[0], roi_w / pooled[1])
    too_big = grid > MAX_GRID
    if bool(too_big.any()):
        row = int(too_big.nonzero()[0, 0])
        raise ValueError(
            f"boxes row {row} ({rois[row].tolist()}) needs an adaptive sampling grid of "
            f"{float(grid[row]):.3g} samples per axis (limit {MAX_GRID}); "
            "pass a fixed sampling_ratio or a smaller box"
        )
