"""Composable Hypothesis strategies for RoIAlign, and the readable case they build.

A :class:`RoIAlignCase` holds everything one call needs, as plain numbers:
feature-map shape + seed (the values are ``randn`` from that seed), layout,
dtype, boxes ``(batch_index, x1, y1, x2, y2)`` in image pixels, and the
RoIAlign parameters. Its ``repr`` is a constructor call, so Hypothesis's
falsifying example pastes straight into Python; :meth:`RoIAlignCase.script`
writes a stand-alone reproduction.

Strategies draw simple things first (integer coordinates, then halves, then
sixteenths, then arbitrary floats; the first box kind, N = 1, ...) so that
shrinking ends on readable examples. Sizes are bounded so the float64
reference (Python loops) stays fast: see :data:`SAMPLE_BUDGET`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from roialign_suite.reference.roi_align import roi_geometry

Box = Tuple[int, float, float, float, float]  # (batch_index, x1, y1, x2, y2), image pixels

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
ALL_DTYPE_NAMES = tuple(DTYPES)
LAYOUTS = ("contiguous", "channels_last", "permuted", "strided")
# maskrcnn_benchmark's FPN box head.
POOLER_SCALES = (0.25, 0.125, 0.0625, 0.03125)
POWER_OF_TWO_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 2.0)
# Bound on sum over RoIs of pooled_h * pooled_w * grid_h * grid_w (each sample is
# 4 taps, ~5 us each in the reference): keeps one reference call under ~50 ms.
SAMPLE_BUDGET = 2500
MAX_BOXES = 6

# The full-precision dtypes: the default of every case strategy, and of the properties whose bounds
# are derived for full precision only.
FULL_PRECISION = ("float64", "float32")


def _exact(value: float, dtype: str) -> float:
    """``value`` rounded to ``dtype`` (so the repr shows the number really used; a half may overflow to inf)."""
    if dtype in FULL_PRECISION:
        return float(np.float32(value)) if dtype == "float32" else float(value)
    return torch.tensor(value, dtype=DTYPES[dtype]).item()  # as :meth:`RoIAlignCase.rois` converts


@dataclass(frozen=True)
class RoIAlignCase:
    """One RoIAlign call: ``roi_align(features(), rois(), output_size, spatial_scale, sampling_ratio, aligned)``.

    ``shape`` is ``(N, C, H, W)``; features are ``randn(shape)`` from ``seed``
    (drawn in float64, rounded to ``dtype``), or the nested ``values`` when
    given (corpus cases), stored with ``layout``; boxes are
    ``(batch_index, x1, y1, x2, y2)`` in image pixels (feature pixel =
    image pixel * spatial_scale).
    """

    shape: Tuple[int, int, int, int]
    boxes: Tuple[Box, ...]
    output_size: Tuple[int, int] = (7, 7)
    spatial_scale: float = 1.0
    sampling_ratio: int = 2
    aligned: bool = False
    dtype: str = "float64"
    layout: str = "contiguous"
    seed: int = 0
    values: Optional[tuple] = None

    def __post_init__(self):
        # Store the box coordinates the tensors will really hold, so the repr is exact.
        boxes = tuple((int(b[0]),) + tuple(_exact(v, self.dtype) for v in b[1:]) for b in self.boxes)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "output_size", tuple(self.output_size))
        if self.values is not None:
            object.__setattr__(self, "values", _nested_tuple(self.values))
            object.__setattr__(self, "shape", tuple(torch.tensor(self.values).shape))
        object.__setattr__(self, "shape", tuple(self.shape))

    # --- tensors --------------------------------------------------------------
    def features(self, dtype: Optional[str] = None) -> torch.Tensor:
        """``[N, C, H, W]`` in ``dtype`` (default the case's) and the case's layout."""
        if self.values is not None:
            values = torch.tensor(self.values, dtype=torch.float64)
        else:
            gen = torch.Generator().manual_seed(self.seed)
            values = torch.randn(self.shape, dtype=torch.float64, generator=gen)
        values = values.to(DTYPES[self.dtype]).to(DTYPES[dtype or self.dtype])
        return with_layout(values, self.layout)

    def rois(self, dtype: Optional[str] = None) -> torch.Tensor:
        """``Tensor[K, 5]`` of the boxes in ``dtype`` (default the case's)."""
        return torch.tensor(self.boxes, dtype=DTYPES[dtype or self.dtype]).reshape(-1, 5)

    def params(self):
        """``(output_size, spatial_scale, sampling_ratio, aligned)``."""
        return self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned

    def run(self, roi_align, features: Optional[torch.Tensor] = None, rois=None) -> torch.Tensor:
        """Call ``roi_align`` on this case (or on the given features / boxes)."""
        features = self.features() if features is None else features
        rois = self.rois() if rois is None else rois
        return roi_align(features, rois, *self.params())

    def replace(self, **changes) -> "RoIAlignCase":
        return dataclasses.replace(self, **changes)

    # --- geometry ---------------------------------------------------------------
    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    def geometries(self):
        """The reference's float64 geometry of every box (see ``reference.roi_geometry``)."""
        return [
            roi_geometry(box[1:], self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
            for box in self.boxes
        ]

    def num_samples(self) -> int:
        """Sample points over all boxes (the reference's cost is ~4 taps each)."""
        per_bin = self.output_size[0] * self.output_size[1]
        return sum(per_bin * max(g.grid_h, 0) * max(g.grid_w, 0) for g in self.geometries())

    # --- reproduction -----------------------------------------------------------
    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
            if not (f.name == "values" and self.values is None)
        )
        return f"RoIAlignCase({fields})"

    def script(self, roi_align: str = "impl.roi_align") -> str:
        """Stand-alone Python that reruns this case on ``roi_align`` (an expression) and the reference."""
        return (
            "# reproduction (runs wherever roialign_suite is importable)\n"
            "import torch\n"
            "from roialign_suite import impl, reference\n"
            "from roialign_suite.implementations import registry\n"
            "from roialign_suite.properties.strategies import RoIAlignCase\n"
            f"case = {self!r}\n"
            f"out = case.run({roi_align})\n"
            "expected = case.run(reference.roi_align, case.features('float64'), case.rois('float64'))\n"
            "print((out.double() - expected).abs().max())\n"
        )


def case_of_tensors(features: torch.Tensor, rois: torch.Tensor, output_size, spatial_scale: float,
                    sampling_ratio: int, aligned: bool) -> RoIAlignCase:
    """The case of a call on given tensors, for the bounds (``properties.tolerances``): its shape,
    boxes and parameters; its own features are ``randn``, so pass ``features`` along with it."""
    names = {dtype: name for name, dtype in DTYPES.items()}
    boxes = tuple((int(r[0]),) + tuple(r[1:]) for r in rois.double().tolist())
    pooled = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    return RoIAlignCase(shape=tuple(features.shape), boxes=boxes, output_size=pooled,
                        spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned,
                        dtype=names[features.dtype])


def _nested_tuple(values):
    return tuple(_nested_tuple(v) for v in values) if isinstance(values, (list, tuple)) else float(values)


def note_if_testing(text: str) -> None:
    """``hypothesis.note`` inside a Hypothesis test; nothing when replayed outside one (the corpus)."""
    try:
        note(text)
    except InvalidArgument:
        pass


def note_reproduction(case: RoIAlignCase, implementation) -> None:
    """Attach the case's reproduction script to a Hypothesis failure report."""
    note_if_testing(case.script(f"registry.resolve({implementation.name!r}).roi_align"))


def with_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values of an ``[N, C, H, W]`` tensor, stored with another memory layout."""
    if layout == "contiguous":
        return values.contiguous()
    if layout == "channels_last":
        return values.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":  # stored as [W, H, N, C]
        return values.permute(3, 2, 0, 1).contiguous().permute(2, 3, 1, 0)
    if layout == "strided":  # every other element of a twice-as-wide map
        wide = torch.zeros(values.shape[:3] + (2 * values.shape[3],), dtype=values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def layout_of(features: torch.Tensor) -> str:
    """The layout :func:`with_layout` stores ``features`` in, by its strides; ``"contiguous"`` for
    any other (its values are then written as a contiguous map)."""
    for layout in LAYOUTS:
        if with_layout(torch.empty(features.shape, dtype=torch.uint8), layout).stride() == features.stride():
            return layout
    return "contiguous"


# --- parameters -----------------------------------------------------------------

def feature_shapes(min_images: int = 1, max_images: int = 3, max_channels: int = 4, max_side: int = 24,
                   min_side: int = 1):
    """``(N, C, H, W)``: small by default (down to 1x1, H != W), sometimes a large map."""
    side = st.one_of(st.integers(min_side, max_side), st.integers(max_side, 8 * max_side))
    return st.tuples(st.integers(min_images, max_images), st.integers(1, max_channels), side, side)


def spatial_scales():
    """Powers of two first (the FPN case), then arbitrary positive scales."""
    arbitrary = st.floats(1 / 40, 2.0, allow_nan=False, allow_infinity=False)
    return st.one_of(st.sampled_from(POWER_OF_TWO_SCALES), arbitrary)


def output_sizes(max_side: int = 7):
    """``(h, w)``, including ``h != w`` and 1."""
    return st.tuples(st.integers(1, max_side), st.integers(1, max_side))


def sampling_ratios():
    """Fixed (2 first: the seed configuration) and adaptive (``<= 0``)."""
    return st.sampled_from([2, 0, 1, 3, -1, 4])


def conventions():
    """``aligned``: False (legacy maskrcnn_benchmark) and True (half-pixel centres)."""
    return st.booleans()


def dtypes(names: Sequence[str] = FULL_PRECISION):
    return st.sampled_from(list(names))


def layouts():
    return st.sampled_from(LAYOUTS)


def image_sizes(max_side: int = 1333):
    """Image ``(height, width)``: any size, oblong, mostly not multiples of 32."""
    return st.tuples(st.integers(1, max_side), st.integers(1, max_side))


def fpn_pyramid(image_size: Tuple[int, int], scales: Sequence[float] = POOLER_SCALES) -> List[Tuple[int, int]]:
    """Feature-map ``(H, W)`` per scale for a backbone of stride-2 stages (each halves, rounding up)."""
    sizes = []
    for scale in scales:
        stride = round(1 / scale)
        sizes.append((-(-image_size[0] // stride), -(-image_size[1] // stride)))
    return sizes


@st.composite
def fpn_levels(draw, scales: Sequence[float] = POOLER_SCALES, max_side: int = 1333):
    """``(image_size, (H, W), scale)``: one level of the FPN pyramid of a drawn image."""
    image = draw(image_sizes(max_side))
    level = draw(st.integers(0, len(scales) - 1))
    return image, fpn_pyramid(image, scales)[level], scales[level]


# --- boxes ----------------------------------------------------------------------

def feature_coordinates(low: float, high: float):
    """A coordinate in feature pixels: integers, then halves, sixteenths, any float."""
    lo, hi = math.floor(low), math.ceil(high)
    return st.one_of(
        st.integers(lo, hi).map(float),
        st.integers(2 * lo, 2 * hi).map(lambda v: v / 2),
        st.integers(16 * lo, 16 * hi).map(lambda v: v / 16),
        st.floats(low, high, allow_nan=False, allow_infinity=False),
    )


def _positive_length(low: float, high: float):
    return st.one_of(
        st.integers(max(1, math.ceil(low)), max(1, math.floor(high))).map(float),
        st.floats(low, high, allow_nan=False, allow_infinity=False, exclude_min=True),
    )


# Each box kind maps (height, width, pooled, grid, aligned) to a strategy of
# (x1, y1, x2, y2) in *feature* pixels; the case converts to image pixels.
def _ordinary(h, w, pooled, grid, aligned):
    return st.tuples(
        feature_coordinates(-1, w), feature_coordinates(-1, h), _positive_length(0, w + 1), _positive_length(0, h + 1)
    ).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


def _inside(h, w, pooled, grid, aligned):
    """Every sample inside ``[0, H-1] x [0, W-1]``: non-empty, non-inverted, no clamping."""
    off = 0.5 if aligned else 0.0

    @st.composite
    def draw_box(draw):
        # Legacy mode forces sizes up to 1, so the box needs room for that.
        min_size = 0.0 if aligned else 1.0
        if w - 1 < min_size or h - 1 < min_size:
            return None
        x1 = draw(feature_coordinates(0, w - 1 - min_size))
        y1 = draw(feature_coordinates(0, h - 1 - min_size))
        x2 = draw(feature_coordinates(x1 + min_size, w - 1))
        y2 = draw(feature_coordinates(y1 + min_size, h - 1))
        if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0 or x2 > w - 1 or y2 > h - 1:
            return None
        return (x1 + off, y1 + off, x2 + off, y2 + off)

    return draw_box()


def _tiny(h, w, pooled, grid, aligned):
    size = st.sampled_from([1 / 16, 1 / 4, 1 / 1024, 1e-6])
    return st.tuples(feature_coordinates(-1, w), feature_coordinates(-1, h), size, size).map(
        lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
    )


def _degenerate(h, w, pooled, grid, aligned):
    return st.tuples(feature_coordinates(-1, w), feature_coordinates(-1, h), _positive_length(0, w), st.booleans()).map(
        lambda t: (t[0], t[1], t[0], t[1] + t[2]) if t[3] else (t[0], t[1], t[0] + t[2], t[1])
    )


def _inverted(h, w, pooled, grid, aligned):
    """x2 < x1, y2 < y1, or both (one axis only makes the aligned adaptive grid negative)."""
    swaps = {"both": lambda b: (b[2], b[3], b[0], b[1]), "x": lambda b: (b[2], b[1], b[0], b[3]),
             "y": lambda b: (b[0], b[3], b[2], b[1])}
    return st.tuples(_ordinary(h, w, pooled, grid, aligned), st.sampled_from(list(swaps))).map(
        lambda t: swaps[t[1]](t[0])
    )


def _boundary_sample(h, w, pooled, grid, aligned):
    """A box whose first or last sample row/column lies exactly on -1, 0, size-1 or size.

    With roi = pooled * grid feature pixels and start = B - 1/2, the first
    sample sits at B (and the adaptive grid is ``grid`` again).
    """
    g = grid if grid > 0 else 1

    @st.composite
    def draw_box(draw):
        axis_is_y = draw(st.booleans())
        size, p = (h, pooled[0]) if axis_is_y else (w, pooled[1])
        line = draw(st.sampled_from([size, -1, 0, size - 1]))
        length = p * g
        last = draw(st.booleans())
        lo = line + 0.5 - length if last else line - 0.5
        other = draw(feature_coordinates(-1, (w if axis_is_y else h)))
        other_len = draw(_positive_length(0, (w if axis_is_y else h)))
        if axis_is_y:
            return (other, lo, other + other_len, lo + length)
        return (lo, other, lo + length, other + other_len)

    off = 0.5 if aligned else 0.0
    return draw_box().map(lambda b: tuple(v + off for v in b))


def _border(h, w, pooled, grid, aligned):
    """Touching (an edge on 0 or the far side) or crossing a border of the map."""
    return st.tuples(
        st.sampled_from([0.0, -0.5, -3.0]), st.sampled_from([0.0, -1.0]),
        st.sampled_from([float(w), w + 0.5, w - 1.0]), st.sampled_from([float(h), h + 2.0]),
    )


def _outside(h, w, pooled, grid, aligned):
    """Entirely beyond one side of the map (more than a pixel away)."""
    return st.tuples(st.sampled_from(["left", "right", "above", "below"]), _positive_length(0, 4)).map(
        lambda t: {
            "left": (-2.0 - t[1], 0.0, -2.0, float(h)),
            "right": (w + 1.5, 0.0, w + 1.5 + t[1], float(h)),
            "above": (0.0, -2.0 - t[1], float(w), -2.0),
            "below": (0.0, h + 1.5, float(w), h + 1.5 + t[1]),
        }[t[0]]
    )


def _huge(h, w, pooled, grid, aligned):
    """Far larger than the map (10x to 1000x)."""
    factor = st.sampled_from([10.0, 100.0, 1000.0])
    return st.tuples(factor, feature_coordinates(-1, 1)).map(
        lambda t: (-t[0] * w + t[1], -t[0] * h, t[0] * w, t[0] * h + t[1])
    )


def _band(h, w, pooled, grid, aligned):
    """The whole sampling band ``[-1, H] x [-1, W]`` (aligned: shifted by half a pixel), or one
    axis of it: the largest box whose every sample counts, so its adaptive grid is the largest
    such (``size + 1`` samples per bin along an axis with one bin)."""
    off = 0.5 if aligned else 0.0
    band = (-1.0 + off, -1.0 + off, w + off, h + off)
    return st.tuples(st.sampled_from(["both", "x", "y"]), _ordinary(h, w, pooled, grid, aligned)).map(
        lambda t: {"both": band, "x": (band[0], t[1][1], band[2], t[1][3]),
                   "y": (t[1][0], band[1], t[1][2], band[3])}[t[0]]
    )


BOX_KINDS = {
    "ordinary": _ordinary,
    "inside": _inside,
    "tiny": _tiny,
    "degenerate": _degenerate,
    "inverted": _inverted,
    "boundary_sample": _boundary_sample,
    "border": _border,
    "outside": _outside,
    "huge": _huge,
    "band": _band,
}
ALL_KINDS = tuple(BOX_KINDS) + ("level_threshold",)
# Boxes whose every sample stays inside the map (for the metamorphic properties).
INSIDE = ("inside",)
# Boxes whose samples stay within [-1, size] and whose grid is non-empty.
NON_INVERTED = ("ordinary", "inside", "tiny", "border", "boundary_sample")

# Side lengths (image pixels) at the FPN level thresholds: sqrt(area) = 224 * 2**k,
# and one pixel less (maskrcnn_benchmark's +1 area).
LEVEL_THRESHOLD_SIDES = (112.0, 224.0, 448.0, 111.0, 223.0, 447.0, 896.0)


def _level_threshold_box(image_h, image_w):
    return st.tuples(st.sampled_from(LEVEL_THRESHOLD_SIDES), st.integers(-8, 8), st.integers(-8, 8)).map(
        lambda t: (float(t[1]), float(t[2]), t[1] + t[0], t[2] + t[0])
    )


@st.composite
def box_lists(draw, shape, spatial_scale, pooled, sampling_ratio, aligned, dtype,
              kinds: Sequence[str] = ALL_KINDS, min_boxes: int = 0, max_boxes: int = MAX_BOXES):
    """Boxes ``(b, x1, y1, x2, y2)`` in image pixels, of the given kinds, sometimes duplicated or overlapping."""
    n, _, h, w = shape
    grid = sampling_ratio if sampling_ratio > 0 else 2
    count = draw(st.integers(min_boxes, max_boxes))
    boxes: List[Box] = []
    for _ in range(count):
        kind = draw(st.sampled_from(list(kinds)))
        if kind == "level_threshold":
            box = draw(_level_threshold_box(h / spatial_scale, w / spatial_scale))
        else:
            feature_box = draw(BOX_KINDS[kind](h, w, pooled, grid, aligned))
            if feature_box is None:
                continue
            box = tuple(v / spatial_scale for v in feature_box)
        box = tuple(_exact(v, dtype) for v in box)
        if not all(math.isfinite(v) for v in box):
            continue  # beyond a half's range (float16 overflows at 65520)
        if kind == "inside" and not (box[2] > box[0] and box[3] > box[1]):
            # A side far below an ulp (y1 = 1e-300, y2 = 2e-300) collapses when the
            # half-pixel offset is added or the dtype rounds it: no longer "inside".
            continue
        index = draw(st.integers(0, n - 1))
        boxes.append((index,) + box)
    if boxes and count < max_boxes and draw(st.booleans()):
        # Repeat one box: on the same image (duplicate) or, shifted, overlapping it.
        src = boxes[draw(st.integers(0, len(boxes) - 1))]
        # A shifted copy could leave the map: "inside" boxes only repeat exactly.
        shift = draw(st.sampled_from([0.0] if set(kinds) <= {"inside"} else [0.0, 0.5, 1.0]))
        index = draw(st.integers(0, n - 1))
        copy = tuple(_exact(v + shift / spatial_scale, dtype) for v in src[1:])
        if all(math.isfinite(v) for v in copy):
            boxes.append((index,) + copy)
    if len(boxes) < min_boxes:
        # A kind could not fit this map (e.g. "inside" on a 1-pixel map); use the whole map.
        off = 0.5 if aligned else 0.0
        whole = tuple(_exact(v / spatial_scale, dtype) for v in (off, off, w - 1 + off, h - 1 + off))
        boxes += [(0,) + whole] * (min_boxes - len(boxes))
    return tuple(boxes)


@st.composite
def roi_align_cases(
    draw,
    dtype_names: Sequence[str] = FULL_PRECISION,
    kinds: Sequence[str] = ALL_KINDS,
    min_images: int = 1,
    min_boxes: int = 0,
    max_boxes: int = MAX_BOXES,
    max_channels: int = 4,
    aligned: Optional[bool] = None,
    sampling: Optional[Sequence[int]] = None,
    any_layout: bool = True,
    fpn: Optional[bool] = None,
    min_side: int = 1,
):
    """A whole :class:`RoIAlignCase`; keyword arguments narrow what is drawn."""
    dtype = draw(dtypes(dtype_names))
    use_fpn = draw(st.booleans()) if fpn is None else fpn
    if use_fpn:
        _, (h, w), scale = draw(fpn_levels(max_side=400).filter(lambda lv: min(lv[1]) >= min_side))
        n = draw(st.integers(min_images, max(min_images, 2)))
        shape = (n, draw(st.integers(1, max_channels)), h, w)
    else:
        shape = draw(feature_shapes(min_images, max(min_images, 3), max_channels, min_side=min_side))
        scale = _exact(draw(spatial_scales()), "float64")
    pooled = draw(output_sizes())
    sampling_ratio = draw(st.sampled_from(list(sampling)) if sampling else sampling_ratios())
    is_aligned = draw(conventions()) if aligned is None else aligned
    boxes = draw(box_lists(shape, scale, pooled, sampling_ratio, is_aligned, dtype, kinds, min_boxes, max_boxes))
    case = RoIAlignCase(
        shape=shape,
        boxes=boxes,
        output_size=pooled,
        spatial_scale=scale,
        sampling_ratio=sampling_ratio,
        aligned=is_aligned,
        dtype=dtype,
        layout=draw(layouts()) if any_layout else "contiguous",
        seed=draw(st.integers(0, 2**16)),
    )
    return within_budget(case)


def within_budget(case: RoIAlignCase) -> RoIAlignCase:
    """``case`` made cheap enough for the reference: a fixed grid of 2 for
    boxes whose adaptive grid explodes (huge boxes), then fewer boxes."""
    if case.num_samples() <= SAMPLE_BUDGET:
        return case
    if case.sampling_ratio <= 0 or case.sampling_ratio > 2:
        case = case.replace(sampling_ratio=2)
    while case.num_samples() > SAMPLE_BUDGET and case.boxes:
        case = case.replace(boxes=case.boxes[:-1])
    return case


# --- accepted third-party refusals ------------------------------------------------

def boxes_with_negative_grid(case: RoIAlignCase) -> List[int]:
    """Rows whose sample grid ``grid_h * grid_w`` is negative (aligned, adaptive, inverted
    along exactly one axis). The definition takes no samples there (output 0); torchvision
    CPU and the ONNX runtimes raise instead (corpus: *negative_sample_grid*)."""
    return [k for k, g in enumerate(case.geometries()) if g.grid_h * g.grid_w < 0]


# --- bad inputs -----------------------------------------------------------------

@dataclass(frozen=True)
class BadInput:
    """A call that must raise ``error`` with every word of ``message`` in its text."""

    description: str
    features: torch.Tensor
    boxes: object
    output_size: object = (2, 2)
    spatial_scale: object = 1.0
    sampling_ratio: object = 2
    aligned: bool = False
    error: type = ValueError
    message: Tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"BadInput({self.description!r})"


@st.composite
def bad_inputs(draw):
    """One invalid argument (non-finite coordinate, bad batch index, wrong shape,
    dtype or parameter) in an otherwise valid call."""
    n = draw(st.integers(1, 3))
    dtype = DTYPES[draw(dtypes())]
    features = torch.randn(n, 2, 5, 6, dtype=dtype)
    k = draw(st.integers(1, 4))
    rois = torch.tensor([[i % n, 0.0, 0.0, 3.0, 3.0] for i in range(k)], dtype=dtype)
    row = draw(st.integers(0, k - 1))
    kind = draw(st.sampled_from([
        "non_finite", "batch_index_high", "batch_index_negative", "batch_index_fraction",
        "boxes_columns", "boxes_1d", "list_columns", "boxes_dtype", "input_3d", "input_int",
        "output_size_zero", "spatial_scale_bad", "sampling_ratio_float", "boxes_device",
    ]))
    if kind == "non_finite":
        column = draw(st.integers(1, 4))
        rois[row, column] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return BadInput(f"{rois[row, column].item()} in boxes[{row}, {column}]", features, rois,
                        message=(f"row {row}", "non-finite"))
    if kind.startswith("batch_index"):
        value = {"batch_index_high": float(n + draw(st.integers(0, 3))), "batch_index_negative": -1.0,
                 "batch_index_fraction": 0.5}[kind]
        rois[row, 0] = value
        return BadInput(f"batch index {value} in row {row} with N={n}", features, rois,
                        message=(f"row {row}", "batch index"))
    if kind == "boxes_columns":
        columns = draw(st.sampled_from([4, 6]))
        return BadInput(f"boxes of shape [K, {columns}]", features, torch.zeros(k, columns, dtype=dtype),
                        message=("boxes", "shape"))
    if kind == "boxes_1d":
        return BadInput("1-D boxes", features, torch.zeros(5, dtype=dtype), message=("boxes", "shape"))
    if kind == "list_columns":
        return BadInput("a per-image list entry of shape [L, 5]", features, [torch.zeros(k, 5, dtype=dtype)],
                        message=("boxes[0]", "shape"))
    if kind == "boxes_dtype":
        other = torch.float64 if dtype == torch.float32 else torch.float32
        return BadInput("boxes dtype differs from input dtype", features, rois.to(other), error=TypeError,
                        message=("dtype",))
    if kind == "input_3d":
        return BadInput("3-D input", features[0], rois, message=("input", "shape"))
    if kind == "input_int":
        return BadInput("integer input", features.to(torch.int64), rois, error=TypeError,
                        message=("input", "dtype"))
    if kind == "output_size_zero":
        size = draw(st.sampled_from([0, -1, (2, 0)]))
        return BadInput(f"output_size {size!r}", features, rois, output_size=size, message=("output_size",))
    if kind == "spatial_scale_bad":
        scale = draw(st.sampled_from([0.0, -0.25, math.nan, math.inf]))
        return BadInput(f"spatial_scale {scale!r}", features, rois, spatial_scale=scale,
                        message=("spatial_scale",))
    if kind == "sampling_ratio_float":
        return BadInput("sampling_ratio 2.0", features, rois, sampling_ratio=2.0, error=TypeError,
                        message=("sampling_ratio",))
    return BadInput("boxes on another device (meta) than input (cpu)", features, rois.to("meta"),
                    message=("boxes", "device", "meta"))


# --- the operator contract: zero sizes, and cases for torch.compile ------------------
# (properties/test_operator_contract.py)

ZERO_SIZES = ("N", "C", "H", "W", "K")


@st.composite
def zero_size_cases(draw, dtype_names: Sequence[str] = FULL_PRECISION):
    """A :class:`RoIAlignCase` in which at least one of N, C, H, W and the box count K is 0,
    alone or together (N = 0 admits no box, so it brings K = 0). Boxes of every kind are
    drawn as for a map of ``max(H, 1) x max(W, 1)`` (the kinds need a pixel to place them
    around; any box is valid input); any layout, convention and grid."""
    # One size 0, each as likely as the others, sometimes with up to two more.
    zero = {draw(st.sampled_from(ZERO_SIZES))} | set(draw(st.lists(st.sampled_from(ZERO_SIZES), max_size=2)))
    if "N" in zero:
        zero = zero | {"K"}
    n, c, h, w = (0 if name in zero else draw(st.integers(1, high)) for name, high in zip("NCHW", (3, 4, 12, 12)))
    dtype = draw(dtypes(dtype_names))
    scale = _exact(draw(spatial_scales()), "float64")
    pooled = draw(output_sizes())
    sampling_ratio = draw(sampling_ratios())
    aligned = draw(conventions())
    boxes = () if "K" in zero else draw(
        box_lists((n, c, max(h, 1), max(w, 1)), scale, pooled, sampling_ratio, aligned, dtype, min_boxes=1))
    case = RoIAlignCase(shape=(n, c, h, w), boxes=boxes, output_size=pooled, spatial_scale=scale,
                        sampling_ratio=sampling_ratio, aligned=aligned, dtype=dtype, layout=draw(layouts()),
                        seed=draw(st.integers(0, 2**16)))
    return within_budget(case)


def zero_sizes(case: RoIAlignCase) -> str:
    """Which of N, C, H, W, K are 0 in ``case`` (e.g. ``"H=0, K=0"``; empty if none)."""
    sizes = dict(zip(ZERO_SIZES, tuple(case.shape) + (case.num_boxes,)))
    return ", ".join(f"{name}=0" for name, size in sizes.items() if size == 0)


def with_dtype(case: RoIAlignCase, dtype: torch.dtype) -> RoIAlignCase:
    """``case`` naming ``dtype`` where a case can (:data:`DTYPES`), so its repr and corpus entry
    say the dtype really used; otherwise ``case`` as it is (the caller passes the dtype along)."""
    name = str(dtype).removeprefix("torch.")
    return case.replace(dtype=name) if name in DTYPES else case


def compile_cases(dtype_names: Sequence[str] = FULL_PRECISION):
    """Cases for comparing ``torch.compile(target)`` with the target: every size (N, C, H, W,
    K, output) at least 2, since dynamo specializes sizes 0 and 1 (each would be a graph of
    its own); fixed grids of 2 or 3 (1 is specialized) or the adaptive 0."""
    return roi_align_cases(dtype_names, min_images=2, min_boxes=2, max_channels=4, sampling=(2, 3, 0),
                           min_side=2).map(_sizes_at_least_two).filter(lambda c: c.num_boxes >= 2)


def _sizes_at_least_two(case: RoIAlignCase) -> RoIAlignCase:
    n, c, h, w = case.shape
    return case.replace(shape=(n, max(c, 2), h, w), output_size=tuple(max(s, 2) for s in case.output_size))
