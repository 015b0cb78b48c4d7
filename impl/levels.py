"""FPN level assignment: which pyramid level pools each box (FPN paper, eq. 1).

``level = floor(k0 + log2(sqrt(area) / s0) + eps)`` clamped to ``[k_min, k_max]``
and returned 0-based (``level - k_min``) as int64; ``s0`` is the canonical
scale (224) and ``k0`` the canonical level (4). Three frameworks write it
differently; each is a named :class:`Dialect`, implemented exactly:

- ``maskrcnn_benchmark``: legacy area ``(x2 - x1 + 1) * (y2 - y1 + 1)``,
  eps 1e-6 inside the log: ``floor(k0 + log2(sqrt(area) / s0 + eps))``.
- ``torchvision``: area ``(x2 - x1) * (y2 - y1)``, eps 1e-6 after the log:
  ``floor(k0 + log2(sqrt(area) / s0) + eps)``.
- ``detectron2``: area ``(x2 - x1) * (y2 - y1)``, eps 1e-8 inside the log.

Precision: the formula runs in the boxes' own dtype with the frameworks' order
of operations, so the ``torchvision`` dialect is bit-for-bit
``torchvision.ops.poolers.LevelMapper`` for float32 and float64 boxes. Hence
float32 and float64 boxes get the same level except when the exact value
before ``floor`` lies within a thin band of a level threshold: for levels in
``[-16, 16]`` the band is ``reference.levels.threshold_band(torch.float32)``
(4.8e-6 in log2 units: boxes whose ``sqrt(area)`` is within ~3.3 ppm of a
threshold ``s0 * 2**j``). Boxes whose size is exactly ``s0 * 2**j`` land on
the upper level ``k0 + j`` in both dtypes: their area, root, ratio and log2
are exact and eps is non-negative.

Defined behaviour outside the frameworks' assumptions:

- a non-finite coordinate raises ``ValueError`` naming the row;
- an area (after the dialect's ``+1``) that is zero, negative (a box inverted
  along one axis), or NaN (``inf * 0`` when a float32 side overflows) gets the
  lowest level, index 0. For zero area this is what all three frameworks do
  (``log2(0) = -inf``, or ``log2(eps)``, clamps to ``k_min``); for negative
  area they take ``sqrt`` of a negative number and cast NaN to int64, which
  is garbage, so this is our definition, not theirs. A box inverted along both
  axes has a positive area and is levelled like its mirror image, as in all
  three frameworks. An area that overflows to ``+inf`` gets the top level.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from roialign_suite.impl.inputs import is_finite_number

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Dialect:
    """One framework's spelling of the level formula."""

    name: str
    # Added to each side before the area product (the legacy "+1" pixel).
    side_offset: float
    eps: float
    # True: log2(sqrt(area) / s0 + eps); False: log2(sqrt(area) / s0) + eps.
    eps_inside_log: bool


DIALECTS: Dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("maskrcnn_benchmark", side_offset=1.0, eps=1e-6, eps_inside_log=True),
        Dialect("torchvision", side_offset=0.0, eps=1e-6, eps_inside_log=False),
        Dialect("detectron2", side_offset=0.0, eps=1e-8, eps_inside_log=True),
    )
}


def get_dialect(dialect) -> Dialect:
    """A :class:`Dialect` or its name -> the :class:`Dialect` (``ValueError`` if unknown)."""
    if isinstance(dialect, Dialect):
        return dialect
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {sorted(DIALECTS)}, got {dialect!r}")
    return DIALECTS[dialect]


def check_level_range(k_min, k_max) -> None:
    """``k_min <= k_max``, both ints."""
    for name, value in (("k_min", k_min), ("k_max", k_max)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if k_min > k_max:
        raise ValueError(f"k_min must be <= k_max, got k_min={k_min}, k_max={k_max}")


def check_canonical(canonical_scale, canonical_level, eps) -> None:
    """Canonical scale finite and positive, canonical level an int, eps finite and >= 0."""
    if isinstance(canonical_scale, bool) or not isinstance(canonical_scale, numbers.Real):
        raise TypeError(f"canonical_scale must be a number, got {canonical_scale!r}")
    if not is_finite_number(canonical_scale) or canonical_scale <= 0:
        raise ValueError(f"canonical_scale must be finite and positive, got {canonical_scale!r}")
    if isinstance(canonical_level, bool) or not isinstance(canonical_level, numbers.Integral):
        raise TypeError(f"canonical_level must be an int, got {canonical_level!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a number, got {eps!r}")
    if not is_finite_number(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")


def check_level_boxes(boxes: Tensor, what: str = "boxes") -> None:
    """``boxes`` must be a floating ``Tensor[K, 4]`` of ``(x1, y1, x2, y2)`` (finiteness: :func:`check_finite_boxes`)."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must have shape [K, 4], got shape {list(boxes.shape)}")
    if boxes.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{what} dtype must be float16, bfloat16, float32 or float64, got {boxes.dtype}")


def check_finite_boxes(boxes: Tensor, rows_per_image: Sequence[int] = ()) -> None:
    """Every coordinate finite, or ``ValueError`` naming the first row (run inside the ``fpn_levels``
    operator): ``boxes row k``, or ``boxlists[i] row j`` when the boxes are per-image lists of
    ``rows_per_image`` rows each, concatenated."""
    finite = torch.isfinite(boxes).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        where = f"boxes row {row}"
        for image, count in enumerate(rows_per_image):
            if row < count:
                where = f"boxlists[{image}] row {row}"
                break
            row -= count
        raise ValueError(f"{where} has non-finite values: {boxes.detach()[int((~finite).nonzero()[0, 0])].tolist()}")


def dialect_areas(boxes: Tensor, dialect: Dialect) -> Tensor:
    """Box areas as the dialect's framework computes them, in the boxes' dtype."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    if dialect.side_offset:
        widths = widths + dialect.side_offset
        heights = heights + dialect.side_offset
    return widths * heights


def levels_for_boxes(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    eps: Optional[float] = None,
    dialect="torchvision",
    rows_per_image: Sequence[int] = (),
) -> Tensor:
    """0-based FPN level of each box: ``Tensor[K, 4]`` (image pixels) -> int64 ``Tensor[K]``.

    ``eps=None`` takes the dialect's eps. See the module docstring for the
    formula, the dtype it runs in and the rules for degenerate boxes. Runs as
    the ``torch.ops.roialign_suite.fpn_levels`` operator, so the finiteness
    check (which needs the data) breaks no ``torch.compile`` graph.
    """
    spec = get_dialect(dialect)
    eps = spec.eps if eps is None else eps
    check_level_range(k_min, k_max)
    check_canonical(canonical_scale, canonical_level, eps)
    check_level_boxes(boxes)
    return torch.ops.roialign_suite.fpn_levels(
        boxes.detach(), k_min, k_max, float(canonical_scale), canonical_level, float(eps), spec.name,
        list(rows_per_image),
    )


def level_formula(boxes: Tensor, k_min: int, k_max: int, canonical_scale: float, canonical_level: int,
                  eps: float, dialect: Dialect) -> Tensor:
    """The dialect's formula on finite boxes, in their dtype (float16/bfloat16 in float32, as
    torchvision's ``box_area`` upcasts them: a 256-pixel box's area overflows float16)."""
    if boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()
    areas = dialect_areas(boxes, dialect)
    positive = areas > 0  # False for zero, negative and NaN areas
    sizes = torch.sqrt(torch.where(positive, areas, torch.ones_like(areas)))
    if dialect.eps_inside_log:
        values = canonical_level + torch.log2(sizes / canonical_scale + eps)
    else:
        values = canonical_level + torch.log2(sizes / canonical_scale) + torch.full_like(sizes, eps)
    levels = torch.clamp(torch.floor(values), min=k_min, max=k_max).to(torch.int64)
    levels = torch.where(positive, levels, torch.full_like(levels, k_min))
    return levels - k_min


class LevelMapper:
    """Maps per-image boxes to 0-based FPN levels; ``torchvision.ops.poolers.LevelMapper``'s interface.

    ``dialect`` picks the framework's formula (default ``"torchvision"``);
    ``eps=None`` takes the dialect's eps. Called with a list of per-image
    float ``Tensor[L, 4]`` (one dtype), returns the concatenated int64 levels.
    """

    def __init__(
        self,
        k_min: int,
        k_max: int,
        canonical_scale: float = 224,
        canonical_level: int = 4,
        eps: Optional[float] = None,
        *,
        dialect="torchvision",
    ):
        self.dialect = get_dialect(dialect)
        self.eps = self.dialect.eps if eps is None else eps
        check_level_range(k_min, k_max)
        check_canonical(canonical_scale, canonical_level, self.eps)
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level

    def __call__(self, boxlists: Sequence[Tensor]) -> Tensor:
        boxes = concat_box_lists(boxlists)
        return levels_for_boxes(boxes, self.k_min, self.k_max, self.s0, self.lvl0, self.eps, self.dialect,
                                [b.shape[0] for b in boxlists])

    def __repr__(self) -> str:
        return (
            f"LevelMapper(k_min={self.k_min}, k_max={self.k_max}, canonical_scale={self.s0}, "
            f"canonical_level={self.lvl0}, eps={self.eps}, dialect={self.dialect.name!r})"
        )


def concat_box_lists(boxlists: Sequence[Tensor]) -> Tensor:
    """A list of per-image ``Tensor[L, 4]`` -> one ``Tensor[K, 4]``; errors name the image and row."""
    if isinstance(boxlists, Tensor) or not isinstance(boxlists, (list, tuple)):
        raise TypeError(f"boxlists must be a list of Tensor[L, 4], got {type(boxlists).__name__}")
    if len(boxlists) == 0:
        raise ValueError("boxlists must hold at least one image's boxes")
    for i, boxes in enumerate(boxlists):
        check_level_boxes(boxes, what=f"boxlists[{i}]")
        if boxes.dtype != boxlists[0].dtype:
            raise TypeError(f"boxlists[{i}] dtype {boxes.dtype} differs from boxlists[0] dtype {boxlists[0].dtype}")
    return torch.cat(list(boxlists))
