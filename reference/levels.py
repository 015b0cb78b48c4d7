"""FPN level assignment written out per box in float64, and torchvision's mapper behind our interface.

Each dialect's formula (see :mod:`impl.levels`) is spelled out, without
impl's code or constants, with Python's ``math`` on the box's coordinates
converted to float64, so for a float32 box it gives the level of the float32
box's exact coordinates. Degenerate boxes follow impl's documented rule:
area ``<= 0`` -> the lowest level.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torchvision
from torch import Tensor

from roialign_suite.impl.levels import check_canonical, check_level_boxes, check_level_range, get_dialect


def level_value(
    box: Sequence[float], canonical_scale: float = 224, canonical_level: int = 4, eps: Optional[float] = None, dialect="torchvision"
) -> float:
    """The real number the dialect floors, for ``box = (x1, y1, x2, y2)``; ``-inf`` when its area is ``<= 0``.

    Written out per dialect, independently of ``impl.levels`` (which only names them).
    """
    name = get_dialect(dialect).name
    x1, y1, x2, y2 = (float(v) for v in box)
    s0, k0 = canonical_scale, canonical_level
    if name == "maskrcnn_benchmark":
        eps = 1e-6 if eps is None else eps
        area = (x2 - x1 + 1) * (y2 - y1 + 1)
        return k0 + math.log2(math.sqrt(area) / s0 + eps) if area > 0 else -math.inf
    if name == "torchvision":
        eps = 1e-6 if eps is None else eps
        area = (x2 - x1) * (y2 - y1)
        return k0 + math.log2(math.sqrt(area) / s0) + eps if area > 0 else -math.inf
    if name == "detectron2":
        eps = 1e-8 if eps is None else eps
        area = (x2 - x1) * (y2 - y1)
        return k0 + math.log2(math.sqrt(area) / s0 + eps) if area > 0 else -math.inf
    raise AssertionError(f"no reference formula for dialect {name!r}")


def level_for_box(
    box: Sequence[float],
    k_min: int,
    k_max: int,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    eps: Optional[float] = None,
    dialect="torchvision",
) -> int:
    """0-based level of one ``(x1, y1, x2, y2)`` box: ``clamp(floor(level_value), k_min, k_max) - k_min``."""
    value = level_value(box, canonical_scale, canonical_level, eps, dialect)
    if value < k_min:
        return 0
    if value >= k_max + 1:  # also +inf, which math.floor cannot take
        return k_max - k_min
    return math.floor(value) - k_min


def levels_for_boxes(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    eps: Optional[float] = None,
    dialect="torchvision",
) -> Tensor:
    """:func:`level_for_box` over the rows of ``Tensor[K, 4]`` -> int64 ``Tensor[K]``; ``impl.levels.levels_for_boxes``'s signature."""
    spec = get_dialect(dialect)
    check_level_range(k_min, k_max)
    check_canonical(canonical_scale, canonical_level, spec.eps if eps is None else eps)
    check_level_boxes(boxes)
    levels = [
        level_for_box(row, k_min, k_max, canonical_scale, canonical_level, eps, spec.name)
        for row in boxes.detach().cpu().double().tolist()
    ]
    return torch.tensor(levels, dtype=torch.int64, device=boxes.device)


def threshold_band(dtype: torch.dtype, magnitude: float = 16.0) -> float:
    """How far from an integer :func:`level_value` must be for ``impl`` in ``dtype`` to floor it the same way.

    Valid for thresholds with ``|level| <= magnitude``. Derivation, with ``u``
    the unit roundoff of ``dtype`` (first order): each side ``x2 - x1 (+1)``
    is rounded (<= 2u relative with the +1), the area product, sqrt,
    ``/ s0`` and ``+ eps`` inside the log add u, u + half the area's error,
    u, u: <= 6.5u relative in the log's argument, i.e. <= 6.5u / ln 2 < 9.4u
    absolute after log2. log2 itself is within 1 ulp of its result
    (|result| <= magnitude: <= 2u * magnitude), and ``k0 +`` and ``+ eps``
    each round once (<= u * magnitude each). Total <= 9.4u + 4u * magnitude,
    under ``5u * magnitude`` for magnitude >= 16.
    """
    unit_roundoff = torch.finfo(dtype).eps / 2
    return 5.0 * unit_roundoff * max(magnitude, 16.0)


def near_threshold(value: float, k_min: int, k_max: int, band: float) -> bool:
    """Whether ``value`` is within ``band`` of a threshold that changes the clamped level (an integer in ``(k_min, k_max]``)."""
    if not math.isfinite(value):
        return False
    nearest = round(value)
    return k_min < nearest <= k_max and abs(value - nearest) < band


def torchvision_levels_for_boxes(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    eps: Optional[float] = None,
    dialect="torchvision",
) -> Tensor:
    """``torchvision.ops.poolers.LevelMapper`` behind ``levels_for_boxes``'s signature (torchvision dialect only).

    No input checks: it shows torchvision's own behaviour, garbage included.
    """
    if get_dialect(dialect).name != "torchvision":
        raise ValueError(f"torchvision's LevelMapper implements the torchvision dialect only, not {dialect!r}")
    mapper = torchvision.ops.poolers.LevelMapper(
        k_min, k_max, canonical_scale, canonical_level, 1e-6 if eps is None else eps
    )
    return mapper([boxes])
