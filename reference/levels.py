"""FPN level assignment written out per box in float64, and torchvision's mapper behind our interface.

The level of a box is ``floor(value)`` clamped to ``[k_min, k_max]``, returned
0-based (``level - k_min``), where ``value`` is one framework's spelling of
the FPN paper's ``k0 + log2(sqrt(area) / s0)`` (``s0`` the canonical scale,
``k0`` the canonical level). The three dialects, from their frameworks:

- ``maskrcnn_benchmark``: sides ``x2 - x1 + 1`` and ``y2 - y1 + 1`` (the
  legacy +1 pixel), eps ``1e-6`` inside the log:
  ``k0 + log2(sqrt(area) / s0 + eps)``.
- ``torchvision``: sides ``x2 - x1`` and ``y2 - y1``, eps ``1e-6`` added after
  the log: ``k0 + log2(sqrt(area) / s0) + eps``.
- ``detectron2``: sides ``x2 - x1`` and ``y2 - y1``, eps ``1e-8`` inside the
  log: ``k0 + log2(sqrt(area) / s0 + eps)``.

Each is computed with Python's ``math`` on the box's coordinates converted to
float64, so for a float32 box it gives the level of the float32 box's exact
coordinates. Rules outside the frameworks' assumptions (the suite's
definition): an area ``<= 0`` (after the dialect's +1; a box inverted along
one axis) gets the lowest level; a box inverted along both axes has a positive
area and is levelled as its mirror image.

A dialect is given by name, or by anything with a ``.name`` attribute holding
one (such as ``impl.levels.Dialect``, which this module does not import).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torchvision
from torch import Tensor

from roialign_suite.reference.inputs import require_int, require_real

# Each dialect's default eps. Where the eps goes and the +1 are spelled out in level_value.
DEFAULT_EPS = {"maskrcnn_benchmark": 1e-6, "torchvision": 1e-6, "detectron2": 1e-8}


def dialect_name(dialect) -> str:
    """The name of ``dialect`` (a name, or an object with ``.name``); ``ValueError`` unless it is one of ours."""
    name = getattr(dialect, "name", dialect)
    if not isinstance(name, str) or name not in DEFAULT_EPS:
        raise ValueError(f"dialect must be one of {sorted(DEFAULT_EPS)} (or have such a .name), got {dialect!r}")
    return name


def check_level_range(k_min, k_max) -> None:
    """``k_min`` and ``k_max`` ints with ``k_min <= k_max``."""
    if require_int("k_min", k_min) > require_int("k_max", k_max):
        raise ValueError(f"k_min must be <= k_max, got k_min={k_min} > k_max={k_max}")


def check_canonical(canonical_scale, canonical_level, eps=0.0) -> None:
    """``canonical_scale`` finite and > 0, ``canonical_level`` an int, ``eps`` finite and >= 0."""
    require_real("canonical_scale", canonical_scale, positive=True)
    require_int("canonical_level", canonical_level)
    require_real("eps", eps, positive=False)


def check_boxes(boxes, name: str = "boxes") -> None:
    """``boxes`` a floating ``Tensor[K, 4]`` of ``(x1, y1, x2, y2)`` rows, each finite (``ValueError`` names the row)."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [K, 4], got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [K, 4], got shape {list(boxes.shape)}")
    if not boxes.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got {boxes.dtype}")
    for k, row in enumerate(boxes.detach().cpu().double().tolist()):
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{name} row {k} has non-finite values: {row}")


def level_value(
    box: Sequence[float], canonical_scale: float = 224, canonical_level: int = 4, eps: Optional[float] = None, dialect="torchvision"
) -> float:
    """The real number the dialect floors, for ``box = (x1, y1, x2, y2)``; ``-inf`` when its area is ``<= 0``.

    ``eps=None`` takes the dialect's eps. No argument checks (see :func:`levels_for_boxes`).
    """
    name = dialect_name(dialect)
    x1, y1, x2, y2 = (float(v) for v in box)
    s0, k0 = canonical_scale, canonical_level
    eps = DEFAULT_EPS[name] if eps is None else eps
    # An area <= 0 (zero, or one axis inverted) or NaN has no log: -inf, the lowest level.
    # A box inverted along both axes has a positive area, levelled as its mirror image.
    if name == "maskrcnn_benchmark":
        area = (x2 - x1 + 1) * (y2 - y1 + 1)
        return k0 + math.log2(math.sqrt(area) / s0 + eps) if area > 0 else -math.inf
    if name == "torchvision":
        area = (x2 - x1) * (y2 - y1)
        return k0 + math.log2(math.sqrt(area) / s0) + eps if area > 0 else -math.inf
    if name == "detectron2":
        area = (x2 - x1) * (y2 - y1)
        return k0 + math.log2(math.sqrt(area) / s0 + eps) if area > 0 else -math.inf
    raise AssertionError(f"dialect_name admitted {name!r}, which has no formula here")


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
    if value < k_min:  # also -inf (area <= 0)
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
    """:func:`level_for_box` over the rows of ``Tensor[K, 4]`` -> int64 ``Tensor[K]`` on ``boxes``' device.

    Same signature as ``impl.levels.levels_for_boxes``; checks every argument first.
    """
    name = dialect_name(dialect)
    check_level_range(k_min, k_max)
    check_canonical(canonical_scale, canonical_level, DEFAULT_EPS[name] if eps is None else eps)
    check_boxes(boxes)
    levels = [
        level_for_box(row, k_min, k_max, canonical_scale, canonical_level, eps, name)
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
    if dialect_name(dialect) != "torchvision":
        raise ValueError(f"torchvision's LevelMapper implements the torchvision dialect only, not {dialect!r}")
    mapper = torchvision.ops.poolers.LevelMapper(
        k_min, k_max, canonical_scale, canonical_level, DEFAULT_EPS["torchvision"] if eps is None else eps
    )
    return mapper([boxes])
