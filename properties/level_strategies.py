"""Strategies for the level-assignment properties (``properties/test_level_assignment.py``), and the mapper they test.

A :class:`MapperUnderTest` is a LevelMapper class with torchvision's
interface (``cls(k_min, k_max, canonical_scale, canonical_level, eps)``,
called with a list of per-image ``Tensor[L, 4]``, returning 0-based int64
levels) and the dialect it claims, whose default eps it is built with.

Coordinates of the invariant properties' boxes are drawn on a 1/8-pixel grid
below 2**16, so they and every side length are exact in float32: a property
about sizes sees exactly the sizes it asked for. :func:`level_cases` draws
what the dialect-formula property checks: boxes a derived fraction of a pixel
below and above every threshold of the mapper's range, ordinary boxes (on the
grid and arbitrary floats), degenerate and inverted ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

from roialign_suite.reference import levels as ref_levels

Box = Tuple[float, float, float, float]  # (x1, y1, x2, y2), image pixels
Params = Tuple[int, int, float, int]  # (k_min, k_max, canonical_scale, canonical_level)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Each dialect's legacy +1 on box sides and where it adds eps (written here, not taken from impl;
# reference.levels spells the formulas out, and the properties check against it).
PLUS_ONE = {"maskrcnn_benchmark": 1.0, "torchvision": 0.0, "detectron2": 0.0}
EPS_INSIDE_LOG = {"maskrcnn_benchmark": True, "torchvision": False, "detectron2": True}
FLOAT64_ROUNDOFF = 2.0**-53


@dataclass(frozen=True)
class MapperUnderTest:
    """A LevelMapper class (torchvision's interface), the dialect it claims, and whether it is ours.

    Ours is also held to the suite's rule for boxes of negative area (as the
    dialect measures it: the lowest level). A third-party mapper, like the
    frameworks (``sqrt`` of a negative number cast to int64), may return
    anything for them, so none are drawn for it.
    """

    cls: Callable
    dialect: str
    ours: bool

    def __call__(self, k_min: int, k_max: int, canonical_scale: float, canonical_level: int):
        """The mapper for these levels, constructed with the dialect's default eps."""
        return self.cls(k_min, k_max, canonical_scale, canonical_level, ref_levels.DEFAULT_EPS[self.dialect])

    @property
    def plus_one(self) -> float:
        return PLUS_ONE[self.dialect]


def tensor(boxes: Sequence[Box], dtype_name: str) -> torch.Tensor:
    return torch.tensor(boxes, dtype=DTYPES[dtype_name]).reshape(-1, 4)


def level_of(mapper, box: Box, dtype_name: str) -> int:
    """The 0-based level ``mapper`` gives one box in ``dtype_name``."""
    return int(mapper([tensor([box], dtype_name)])[0])


def measured_box(corner: Tuple[float, float], width: float, height: float, plus_one: float) -> Box:
    """The box at ``corner`` whose sides, as a dialect with ``plus_one`` measures them, are ``width`` and ``height``."""
    x1, y1 = corner
    return (x1, y1, x1 + width - plus_one, y1 + height - plus_one)


def in_dtype(value: float, dtype_name: str) -> float:
    """``value`` rounded to ``dtype_name`` (so a case shows the number really used)."""
    return float(np.float32(value)) if dtype_name == "float32" else float(value)


# --- the invariant properties' draws ---------------------------------------------------------

eighths = st.integers(-(2**15), 2**15).map(lambda n: n / 8)  # |x| <= 4096, exact in float32
log_sides = st.floats(-3, 12).map(lambda e: round(2**e * 8) / 8)  # 1/8 px to 4096 px, log-uniform
sides = st.one_of(log_sides, st.integers(0, 2**13).map(lambda n: n / 8))
shifts = st.tuples(st.sampled_from([1, -1]), log_sides).map(lambda t: t[0] * t[1])  # +-1/8 px to +-4096 px
dtype_names = st.sampled_from(sorted(DTYPES))


def mapper_params():
    """``(k_min, k_max, canonical_scale, canonical_level)``: the FPN box head's, or FPN-like ranges with k0 anywhere near them."""
    return st.one_of(st.just((2, 5, 224, 4)), _any_mapper_params())


@st.composite
def _any_mapper_params(draw):
    k_min = draw(st.integers(0, 4))
    k_max = draw(st.integers(k_min, k_min + 4))
    canonical_scale = draw(st.sampled_from([224, 224, 32, 100, 7]))
    canonical_level = draw(st.integers(k_min - 1, k_max + 1))
    return k_min, k_max, canonical_scale, canonical_level


@st.composite
def exact_boxes(draw):
    """``(x1, y1, x2, y2)`` with ``x2 >= x1``, ``y2 >= y1`` on the 1/8 grid."""
    x1, y1 = draw(eighths), draw(eighths)
    return (x1, y1, x1 + draw(sides), y1 + draw(sides))


@st.composite
def box_below_top_level(draw, params: Params, plus_one: float):
    """A box on the 1/8 grid whose measured sides (with ``plus_one``) put its exact level in ``[k_min, k_max - 1]``
    (so its double is unclamped)."""
    k_min, k_max, s0, k0 = params
    assume(k_min < k_max)
    exponent = draw(st.integers(k_min, k_max - 1)) - k0 + draw(st.floats(0, 1, exclude_max=True))
    aspect = draw(st.floats(-1, 1))
    width = max(round(s0 * 2 ** (exponent + aspect) * 8) / 8, 0.125)
    height = max(round(s0 * 2 ** (exponent - aspect) * 8) / 8, 0.125)
    return measured_box((draw(eighths), draw(eighths)), width, height, plus_one)


# --- the dialect-formula property's draws ----------------------------------------------------

def threshold_side(n: int, canonical_scale: float, canonical_level: int, dialect: str) -> float:
    """The measured side (square root of the area as ``dialect`` measures it) at which the dialect's value is ``n``.

    eps after the log: ``k0 + log2(t / s0) + eps = n`` gives ``t = s0 * 2**(n - k0 - eps)``;
    eps inside it: ``k0 + log2(t / s0 + eps) = n`` gives ``t = s0 * (2**(n - k0) - eps)``.
    """
    eps = ref_levels.DEFAULT_EPS[dialect]
    if EPS_INSIDE_LOG[dialect]:
        return canonical_scale * (2.0 ** (n - canonical_level) - eps)
    return canonical_scale * 2.0 ** (n - canonical_level - eps)


# Offsets from a threshold. A box drawn by near_threshold_box has measured sides m * a and
# m / a (a in {1/2, 1, 2}: area m**2 exactly) with m = t +- f, t = threshold_side(n), f > 0 pixels.
# Its value is n + log2(1 +- f / D): D = t for eps after the log (value = n + log2(m / t)), and
# D = s_n = s0 * 2**(n - k0) for eps inside it (m / s0 + eps = 2**(n - k0) +- f / s0). Both D <= s_n,
# and |log2(1 +- y)| >= y for 0 <= y <= 1/4, so the value lies >= f / s_n from n.
#
# What moves it after the draw, in log2 units (u the unit roundoff of the boxes' dtype,
# u64 = 2**-53, first order):
# - coordinates: x2 = x1 + (m * a - plus_one) is formed in float64 and rounded to the dtype,
#   so the measured side moves by <= (u + 2 u64) |x2|, and |x2| <= |x1| + m * a + plus_one with
#   |x1| <= 8 m * a (the corner is drawn so): relative <= (u + 2 u64) (9 + plus_one / (m * a)).
#   Half of each side's relative error, over ln 2: <= (u + 2 u64) (9 + plus_one / w) / ln 2,
#   w >= 3 s_n / 8 the shorter side (m >= 3 s_n / 4 since f <= s_n / 4, a >= 1/2).
# - t and m in float64: |n - k0| <= 16 ulps in the exponent, exp2, * s0, +- f: < 32 u64.
# - the reference's own float64 evaluation: <= threshold_band(float64) <= threshold_band(dtype)
#   (the same operations; reference.levels.threshold_band's derivation).
# So offsets f >= s_n * (2 * band + coordinates + 32 u64) keep the reference's value >= band from
# n: near_threshold never excuses these boxes, and the property asserts that it does not.
# The largest offset, min(1 px, s_n / 4), keeps them a fraction of a pixel (and a quarter of
# the side) away; f is log-uniform in between, so float64 boxes reach down to ~1e-13 of the
# side, where eps inside or after the log (~1e-6 of it) decides the level.

def offset_floor(s_n: float, plus_one: float, dtype_name: str) -> float:
    """Smallest offset (pixels) from the threshold side that keeps a drawn box out of ``dtype_name``'s band (above)."""
    band = ref_levels.threshold_band(DTYPES[dtype_name])
    u = torch.finfo(DTYPES[dtype_name]).eps / 2 + 2 * FLOAT64_ROUNDOFF
    coordinates = u * (9 + plus_one / (3 * s_n / 8)) / math.log(2)
    return s_n * (2 * band + coordinates + 32 * FLOAT64_ROUNDOFF)


@st.composite
def near_threshold_box(draw, params: Params, n: int, below: bool, dialect: str, dtype_name: str):
    """A box whose size, as ``dialect`` measures it, is a derived fraction of a pixel below (or above) threshold ``n``.

    Its reference level is ``n - 1`` (``n``) and its value lies outside the
    dtype's rounding band: see the derivation above.
    """
    _, _, s0, k0 = params
    s_n = s0 * 2.0 ** (n - k0)
    low = offset_floor(s_n, PLUS_ONE[dialect], dtype_name)
    high = max(min(1.0, s_n / 4), low)
    offset = low * (high / low) ** draw(st.floats(0, 1))
    side = threshold_side(n, s0, k0, dialect) + (-offset if below else offset)
    aspect = 2.0 ** draw(st.integers(-1, 1))
    width, height = side * aspect, side / aspect
    corner = tuple(draw(st.integers(-int(64 * length), int(64 * length))) / 8 for length in (width, height))
    return tuple(in_dtype(v, dtype_name) for v in measured_box(corner, width, height, PLUS_ONE[dialect]))


@st.composite
def other_box(draw, plus_one: float, negative_areas: bool, dtype_name: str):
    """An ordinary box (on the 1/8 grid, or arbitrary floats of the dtype), a degenerate one (a measured side 0,
    or ``x2 == x1``) or one inverted along both axes; with ``negative_areas`` also inverted along one axis.
    Without it every measured area is >= 0."""
    kind = draw(st.sampled_from(["grid", "float", "degenerate", "inverted"]))
    if kind == "grid":
        return draw(exact_boxes())
    x1, y1 = draw(eighths), draw(eighths)
    if kind == "float":
        coordinate = st.floats(-1e4, 1e4, width=32 if dtype_name == "float32" else 64)
        xs, ys = [draw(coordinate), draw(coordinate)], [draw(coordinate), draw(coordinate)]
        if not negative_areas:
            xs, ys = sorted(xs), sorted(ys)
        return (xs[0], ys[0], xs[1], ys[1])
    if kind == "degenerate":
        width, height = draw(st.sampled_from([0.0, plus_one])), draw(st.one_of(st.sampled_from([0.0, plus_one]), sides))
        if draw(st.booleans()):
            width, height = height, width
        return measured_box((x1, y1), width, height, plus_one)
    # Inverted: x2 = x1 - w, so the measured side is plus_one - w (and plus_one - h).
    w = draw(sides)
    h = draw(sides if negative_areas else sides.filter(lambda h: (plus_one - h) * (plus_one - w) >= 0))
    flips = (True, True) if not negative_areas else draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    return (x1, y1, x1 - w if flips[0] else x1 + w, y1 - h if flips[1] else y1 + h)


@dataclass(frozen=True)
class LevelCase:
    """One mapper call: its parameters, dtype and per-image boxes, with each row's intended absolute level when
    it was drawn near a threshold (``None`` for the others)."""

    params: Params
    dtype: str
    images: Tuple[Tuple[Box, ...], ...]
    intended: Tuple[Optional[int], ...]

    def tensors(self) -> List[torch.Tensor]:
        return [tensor(image, self.dtype) for image in self.images]

    def rows(self) -> List[List[float]]:
        """The boxes of all images, as the dtype holds them, in float64."""
        return torch.cat(self.tensors()).double().tolist()


@st.composite
def level_cases(draw, dialect: str, negative_areas: bool, dtype_names: Sequence[str] = tuple(DTYPES)):
    """A :class:`LevelCase`: a box below and one above every threshold ``n`` in ``(k_min, k_max]`` (their sizes as
    ``dialect`` measures them), then up to 4 :func:`other_box`, split over one or two images."""
    params = draw(mapper_params())
    dtype_name = draw(st.sampled_from(list(dtype_names)))
    k_min, k_max, _, _ = params
    rows = [
        (draw(near_threshold_box(params, n, below, dialect, dtype_name)), n - below)
        for n in range(k_min + 1, k_max + 1)
        for below in (True, False)
    ]
    for _ in range(draw(st.integers(0 if rows else 1, 4))):
        box = draw(other_box(PLUS_ONE[dialect], negative_areas, dtype_name))
        rows.append((tuple(in_dtype(v, dtype_name) for v in box), None))
    split = draw(st.integers(1, len(rows)))
    images = tuple(part for part in (rows[:split], rows[split:]) if part)
    return LevelCase(params, dtype_name, tuple(tuple(box for box, _ in image) for image in images),
                     tuple(level for _, level in rows))
