"""The oracles' own front end: torchvision's ``roi_align`` arguments, checked one by one.

Written from torchvision's documented contract for
``torchvision.ops.roi_align(input, boxes, output_size, spatial_scale=1.0,
sampling_ratio=-1, aligned=False)``, and nothing else:

- ``input``: ``Tensor[N, C, H, W]`` (here float16, bfloat16, float32 or
  float64); any of ``N, C, H, W`` may be 0 (PyTorch's empty tensors: what
  the definition gives then is in ``reference.roi_align``).
- ``boxes``: ``Tensor[K, 5]`` of rows ``(batch_index, x1, y1, x2, y2)``, or a
  list of per-image ``Tensor[L, 4]`` rows ``(x1, y1, x2, y2)`` (the i-th
  tensor's boxes belong to image i), of ``input``'s dtype and device.
- ``output_size``: ``int`` or ``(h, w)``, positive.
- ``spatial_scale``: finite and positive.
- ``sampling_ratio``: an int; ``<= 0`` means adaptive.
- ``aligned``: a bool.

Every check raises ``TypeError`` (wrong kind or dtype) or ``ValueError``
(wrong value, shape or device) whose message names the argument and, for a
box, its row. What makes a box row valid is written once, for one row, in
:func:`_check_row`.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, List, NamedTuple, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

BoxesArg = Union[Tensor, Sequence[Tensor]]

# What the float64 reference accepts: every floating dtype torchvision's kernels take.
REFERENCE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Adaptive sampling takes ceil(roi_size / pooled) samples per bin along each
# axis. The reference loops over them in Python, so a box needing more than
# this many per axis (a 1e9-pixel box) is refused rather than run for ever.
MAX_GRID = 65536


def _is_int(value) -> bool:
    # bool is an int to Python, never a size, a level or a ratio here.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_int(name: str, value) -> int:
    """``value`` as a Python int, or ``TypeError`` naming ``name``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def require_real(name: str, value, positive: bool) -> float:
    """``value`` as a finite Python float, ``> 0`` if ``positive`` else ``>= 0``; errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    bound_ok = number > 0 if positive else number >= 0
    if not (math.isfinite(number) and bound_ok):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def check_features(input, dtypes: Sequence[torch.dtype] = REFERENCE_DTYPES, name: str = "input") -> Tensor:
    """``input`` as given, after checking it is a ``[N, C, H, W]`` tensor of one of ``dtypes``.

    Any size may be 0: C = 0 gives no channels, H = 0 or W = 0 a map without
    pixels (every bin 0), and N = 0 admits no box (a batch index must lie in
    ``[0, N)``, checked with the boxes).
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, C, H, W], got {type(input).__name__}")
    shape = list(input.shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got shape {shape}")
    if input.dtype not in dtypes:
        raise TypeError(f"{name} dtype must be one of {', '.join(map(str, dtypes))}; got {input.dtype}")
    return input


def output_size_pair(output_size) -> Tuple[int, int]:
    """``output_size`` (an int, or a pair ``(h, w)``) as a pair of positive Python ints."""
    pair = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(pair) != 2:
        raise ValueError(f"output_size must be an int or (h, w), got {output_size!r} of length {len(pair)}")
    if not all(_is_int(side) for side in pair):
        raise TypeError(f"output_size must be an int or a pair of ints, got {output_size!r}")
    if min(pair) < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return int(pair[0]), int(pair[1])


def check_spatial_scale(spatial_scale) -> float:
    """``spatial_scale`` as a Python float, finite and positive."""
    return require_real("spatial_scale", spatial_scale, positive=True)


def check_sampling_ratio(sampling_ratio) -> int:
    """``sampling_ratio`` as a Python int (``<= 0``: adaptive)."""
    return require_int("sampling_ratio", sampling_ratio)


def check_aligned(aligned) -> bool:
    """``aligned`` as a Python bool; only a bool (Python's or numpy's, or the ints 0 and 1) is accepted."""
    if isinstance(aligned, (bool, np.bool_)):
        return bool(aligned)
    if _is_int(aligned) and aligned in (0, 1):
        return bool(aligned)
    raise TypeError(f"aligned must be a bool, got {aligned!r}")


def _check_box_tensor(boxes, input: Tensor, name: str, columns: int) -> None:
    """One box tensor's kind, shape, dtype and device (not its values): torchvision's contract
    is boxes of ``input``'s dtype on ``input``'s device."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype != input.dtype:
        raise TypeError(f"{name} must have input's dtype {input.dtype}, got dtype {boxes.dtype}")
    if boxes.device != input.device:
        raise ValueError(f"{name} must be on input's device {input.device}, got device {boxes.device}")
    if boxes.dim() != 2 or boxes.shape[1] != columns:
        expected = f"[{'K' if columns == 5 else 'L'}, {columns}]"
        raise ValueError(f"{name} must have shape {expected}, got shape {list(boxes.shape)}")


def _check_row(row: List[float], where: str, num_images: int) -> None:
    """The definition of a valid ``(batch_index, x1, y1, x2, y2)`` row: all finite, and
    the batch index an integer in ``[0, N)``. ``ValueError`` naming the row otherwise."""
    if not all(math.isfinite(v) for v in row):
        raise ValueError(f"{where} has non-finite values: {row}")
    index = row[0]
    if index != math.floor(index) or not 0 <= index < num_images:
        raise ValueError(f"{where} has batch index {index!r}; it must be an integer in [0, N) = [0, {num_images})")


def _check_rows(rois: Tensor, num_images: int, where: Callable[[int], str]) -> None:
    """:func:`_check_row` on the first row that fails it, if any (``where(k)`` names row ``k``).

    The rows are screened at once with the same two conditions (the adapters
    timed by the benchmarks call this on thousands of rows); the first row the
    screen rejects goes through :func:`_check_row`, which says what is wrong.
    """
    index = rois[:, 0]
    valid = torch.isfinite(rois).all(dim=1) & (index == index.floor()) & (index >= 0) & (index < num_images)
    if bool(valid.all()):
        return
    k = int((~valid).nonzero()[0, 0])
    _check_row(rois[k].tolist(), where(k), num_images)
    raise AssertionError(f"row {k} failed the screen but passed _check_row: {rois[k].tolist()}")


def rois_from_boxes(boxes: BoxesArg, input: Tensor) -> Tensor:
    """``boxes`` (either form) as a float64 CPU ``Tensor[K, 5]`` of rows ``(batch_index, x1, y1, x2, y2)``.

    Rows keep the caller's order (the list form: image 0's boxes, then image
    1's, ...). float64 holds every float16, bfloat16 and float32 value, and
    every batch index, exactly, so the rows are the caller's exact numbers.
    ``ValueError`` names the first row with a non-finite value or a batch
    index that is not an integer in ``[0, N)``; in the list form the row is
    named both within its image's tensor and in the concatenated order.
    """
    num_images = input.shape[0]
    if isinstance(boxes, Tensor):
        _check_box_tensor(boxes, input, "boxes", columns=5)
        rois = boxes.detach().to(device="cpu", dtype=torch.float64, copy=True)
        _check_rows(rois, num_images, lambda k: f"boxes row {k}")
        return rois
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    for i, per_image in enumerate(boxes):
        _check_box_tensor(per_image, input, f"boxes[{i}]", columns=4)
    # The list position is the batch index (so an image past N has none to pool from).
    parts = [torch.zeros(0, 5, dtype=torch.float64)]
    for i, per_image in enumerate(boxes):
        coordinates = per_image.detach().to(device="cpu", dtype=torch.float64)
        parts.append(torch.cat([torch.full((len(coordinates), 1), float(i), dtype=torch.float64), coordinates], 1))
    rois = torch.cat(parts)

    def where(k: int) -> str:
        image = int(rois[k, 0])  # the list position, put there above
        row = k - sum(len(b) for b in boxes[:image])
        return f"boxes[{image}] row {row} (boxes row {k} in concatenated order)"

    _check_rows(rois, num_images, where)
    return rois


class RoIAlignArgs(NamedTuple):
    """Checked ``roi_align`` arguments; ``rois`` as :func:`rois_from_boxes` gives them."""

    input: Tensor
    rois: Tensor
    output_size: Tuple[int, int]
    spatial_scale: float
    sampling_ratio: int
    aligned: bool


def roi_align_args(
    input,
    boxes: BoxesArg,
    output_size,
    spatial_scale=1.0,
    sampling_ratio=-1,
    aligned=False,
    dtypes: Sequence[torch.dtype] = REFERENCE_DTYPES,
) -> RoIAlignArgs:
    """Every ``torchvision.ops.roi_align`` argument checked, in the signature's order."""
    check_features(input, dtypes)
    rois = rois_from_boxes(boxes, input)
    return RoIAlignArgs(
        input,
        rois,
        output_size_pair(output_size),
        check_spatial_scale(spatial_scale),
        check_sampling_ratio(sampling_ratio),
        check_aligned(aligned),
    )
