"""Properties of FPN level assignment (``impl.levels``), for every dialect and a user's LevelMapper.

The ``level_mapper`` fixture is ``impl.LevelMapper`` (torchvision dialect)
and, with ``--roialign-level-mapper=MODULE:ATTR``, that class too (torchvision's
LevelMapper constructor and call, e.g. ``torchvision.ops.poolers:LevelMapper``).

Coordinates are drawn on a 1/8-pixel grid below 2**16, so they and every
side length are exact in float32: a property about sizes sees exactly the
sizes it asked for. Arbitrary float32 coordinates are drawn where rounding is
the point (dialect formulas, float32 vs float64).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from roialign_suite import impl
from roialign_suite.impl.levels import DIALECTS, levels_for_boxes
from roialign_suite.reference import levels as ref_levels
from roialign_suite.properties.implementations import load_object

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Each dialect's legacy +1 on box sides (written here, not taken from impl).
PLUS_ONE = {"maskrcnn_benchmark": 1.0, "torchvision": 0.0, "detectron2": 0.0}


def pytest_generate_tests(metafunc):
    if "level_mapper" in metafunc.fixturenames:
        spec = metafunc.config.getoption("roialign_level_mapper")
        ids = ["impl"] + ([f"target:{spec}"] if spec else [])
        metafunc.parametrize("level_mapper", ids, indirect=True, scope="module")


@pytest.fixture(scope="module")
def level_mapper(request):
    """A LevelMapper class under test: torchvision's ``(k_min, k_max, canonical_scale, canonical_level, eps)``."""
    if request.param == "impl":
        return impl.LevelMapper
    return load_object(request.param.partition(":")[2])


# --- strategies ------------------------------------------------------------------

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
def any_boxes(draw, params, plus_one):
    """Boxes as they come: float32 coordinates, inverted and degenerate ones, and sides just around a threshold
    (as a dialect with ``plus_one`` on its sides measures them)."""
    k_min, k_max, s0, k0 = params
    kind = draw(st.sampled_from(["exact", "float", "eps window", "eps window", "band edge"]))
    if kind == "exact":
        return draw(exact_boxes())
    if kind == "float":
        coordinate = st.floats(-1e4, 1e4, width=32)
        return tuple(draw(coordinate) for _ in range(4))
    # Side s0 * 2**(n - k0 + d) for a threshold n in (k_min, k_max]. The eps window |d| <= 3e-6 is
    # where eps (1e-6 after the log, or inside it ~1.44e-6 / 2**(n - k0)) and float32 rounding
    # (band ~4.8e-6) decide the level; the band edge, |d| from 1e-7 to 1e-2, reaches outside the band.
    threshold = draw(st.integers(k_min + 1, k_max)) if k_min < k_max else k0
    if kind == "eps window":
        offset = draw(st.floats(-3e-6, 3e-6))
    else:
        offset = draw(st.sampled_from([1, -1])) * 10 ** draw(st.floats(-7, -2))
    side = s0 * 2.0 ** (threshold - k0 + offset)
    aspect = 2.0 ** draw(st.integers(-1, 1))
    x1, y1 = draw(eighths), draw(eighths)
    return (x1, y1, x1 + side * aspect - plus_one, y1 + side / aspect - plus_one)


def _tensor(boxes, dtype_name):
    return torch.tensor(boxes, dtype=DTYPES[dtype_name]).reshape(-1, 4)


def _level(mapper, box, dtype_name):
    return int(mapper([_tensor([box], dtype_name)])[0])


# --- properties of any LevelMapper (torchvision dialect) -----------------------------------

@given(params=mapper_params(), images=st.lists(st.lists(exact_boxes(), max_size=5), min_size=1, max_size=3),
       dtype=dtype_names)
def test_level_in_range(level_mapper, params, images, dtype):
    k_min, k_max, s0, k0 = params
    levels = level_mapper(k_min, k_max, s0, k0)([_tensor(boxes, dtype) for boxes in images])
    assert levels.dtype == torch.int64 and levels.shape == (sum(len(b) for b in images),)
    assert bool(((levels >= 0) & (levels <= k_max - k_min)).all())


@given(params=mapper_params(), box=exact_boxes(), grow_w=sides, grow_h=sides, dtype=dtype_names)
def test_monotone_in_box_size(level_mapper, params, box, grow_w, grow_h, dtype):
    mapper = level_mapper(*params)
    x1, y1, x2, y2 = box
    assert _level(mapper, (x1, y1, x2 + grow_w, y2 + grow_h), dtype) >= _level(mapper, box, dtype)


@given(params=mapper_params(), boxes=st.lists(exact_boxes(), min_size=1, max_size=8), dx=shifts, dy=shifts,
       dtype=dtype_names)
def test_translation_invariant(level_mapper, params, boxes, dx, dy, dtype):
    mapper = level_mapper(*params)
    moved = [(x1 + dx, y1 + dy, x2 + dx, y2 + dy) for x1, y1, x2, y2 in boxes]
    assert torch.equal(mapper([_tensor(moved, dtype)]), mapper([_tensor(boxes, dtype)]))


@st.composite
def box_below_top_level(draw, params):
    """A box on the 1/8 grid whose exact level lies in ``[k_min, k_max - 1]`` (so its double is unclamped)."""
    k_min, k_max, s0, k0 = params
    assume(k_min < k_max)
    exponent = draw(st.integers(k_min, k_max - 1)) - k0 + draw(st.floats(0, 1, exclude_max=True))
    aspect = draw(st.floats(-1, 1))
    x1, y1 = draw(eighths), draw(eighths)
    width = max(round(s0 * 2 ** (exponent + aspect) * 8) / 8, 0.125)
    height = max(round(s0 * 2 ** (exponent - aspect) * 8) / 8, 0.125)
    return (x1, y1, x1 + width, y1 + height)


@given(data=st.data(), params=mapper_params(), dtype=dtype_names)
def test_doubling_both_sides_moves_up_one_level(level_mapper, data, params, dtype):
    k_min, k_max, s0, k0 = params
    box = data.draw(box_below_top_level(params))
    value = ref_levels.level_value(box, s0, k0)
    # The 1/8 grid may push a box out of range; and a value within the rounding band of a
    # threshold may floor either way (doubling is exact, log2(2q) = log2(q) + 1 up to rounding).
    assume(k_min <= value < k_max)
    assume(not ref_levels.near_threshold(value, k_min - 1, k_max + 1, ref_levels.threshold_band(DTYPES[dtype])))
    x1, y1, x2, y2 = box
    doubled = (x1, y1, x1 + 2 * (x2 - x1), y1 + 2 * (y2 - y1))
    mapper = level_mapper(k_min, k_max, s0, k0)
    assert _level(mapper, doubled, dtype) == _level(mapper, box, dtype) + 1


@given(params=mapper_params(), corner=st.tuples(eighths, eighths), aspect=st.integers(-2, 2), dtype=dtype_names)
def test_canonical_box_lands_on_canonical_level(level_mapper, params, corner, aspect, dtype):
    k_min, k_max, s0, k0 = params
    assume(k_min <= k0 <= k_max)
    # Area s0**2 exactly: s0 * 2**a wide, s0 / 2**a high.
    x1, y1 = corner
    box = (x1, y1, x1 + s0 * 2.0**aspect, y1 + s0 / 2.0**aspect)
    assert _level(level_mapper(k_min, k_max, s0, k0), box, dtype) == k0 - k_min


def _power_of_two_box(corner, s0, j, aspect, side_offset):
    """A box of area ``(s0 * 2**j)**2`` as a dialect measures it (``side_offset`` = its +1)."""
    x1, y1 = corner
    return (x1, y1, x1 + s0 * 2.0 ** (j + aspect) - side_offset, y1 + s0 * 2.0 ** (j - aspect) - side_offset)


@given(params=mapper_params(), corner=st.tuples(eighths, eighths), j=st.integers(-3, 3), aspect=st.integers(-1, 1),
       dtype=dtype_names)
def test_power_of_two_sizes_land_on_upper_level(level_mapper, params, corner, j, aspect, dtype):
    k_min, k_max, s0, k0 = params
    box = _power_of_two_box(corner, s0, j, aspect, 0.0)
    expected = min(max(k0 + j, k_min), k_max) - k_min
    assert _level(level_mapper(k_min, k_max, s0, k0), box, dtype) == expected


# --- each dialect (impl) ---------------------------------------------------------------

DIALECT_NAMES = pytest.mark.parametrize("dialect", sorted(DIALECTS))


@DIALECT_NAMES
@given(params=mapper_params(), corner=st.tuples(eighths, eighths), j=st.integers(-3, 3), aspect=st.integers(-1, 1),
       dtype=dtype_names)
def test_power_of_two_sizes_land_on_upper_level_in_each_dialect(dialect, params, corner, j, aspect, dtype):
    k_min, k_max, s0, k0 = params
    box = _power_of_two_box(corner, s0, j, aspect, PLUS_ONE[dialect])
    expected = min(max(k0 + j, k_min), k_max) - k_min
    assert levels_for_boxes(_tensor([box], dtype), k_min, k_max, s0, k0, dialect=dialect).tolist() == [expected]


@st.composite
def boxes_and_params(draw, plus_one):
    params = draw(mapper_params())
    return params, draw(st.lists(any_boxes(params, plus_one), min_size=1, max_size=10))


@DIALECT_NAMES
@given(data=st.data(), dtype=dtype_names)
def test_dialect_equals_its_reference_formula(dialect, data, dtype):
    (k_min, k_max, s0, k0), boxes = data.draw(boxes_and_params(PLUS_ONE[dialect]), label="case")
    tensor = _tensor(boxes, dtype)
    ours = levels_for_boxes(tensor, k_min, k_max, s0, k0, dialect=dialect).tolist()
    band = ref_levels.threshold_band(DTYPES[dtype])
    for row, level in zip(tensor.double().tolist(), ours):
        expected = ref_levels.level_for_box(row, k_min, k_max, s0, k0, dialect=dialect)
        if level != expected:
            # Only a value within the dtype's rounding band of a threshold may floor the other way.
            value = ref_levels.level_value(row, s0, k0, dialect=dialect)
            assert ref_levels.near_threshold(value, k_min, k_max, band) and abs(level - expected) == 1, (row, value)


@DIALECT_NAMES
@given(data=st.data())
def test_float32_and_float64_agree_outside_threshold_band(dialect, data):
    (k_min, k_max, s0, k0), boxes = data.draw(boxes_and_params(PLUS_ONE[dialect]), label="case")
    single = _tensor(boxes, "float32")
    in_float32 = levels_for_boxes(single, k_min, k_max, s0, k0, dialect=dialect).tolist()
    in_float64 = levels_for_boxes(single.double(), k_min, k_max, s0, k0, dialect=dialect).tolist()
    band = ref_levels.threshold_band(torch.float32)
    for row, a, b in zip(single.double().tolist(), in_float32, in_float64):
        if a != b:
            value = ref_levels.level_value(row, s0, k0, dialect=dialect)
            assert ref_levels.near_threshold(value, k_min, k_max, band), (row, value, a, b)


# eps inside the log (maskrcnn_benchmark, detectron2) lifts sizes just below a threshold:
# log2(r * (1 - delta) + eps) >= log2(r) iff delta <= eps / r, with r = 2**(n - k0) the
# threshold ratio, while eps added after the log lifts only delta <= eps * ln2 (to first
# order). A box with delta = u * eps / r, u in [0.75, 0.95], sits between the two rules.
EPS_INSIDE_LOG = {"maskrcnn_benchmark": 1e-6, "detectron2": 1e-8}


@pytest.mark.parametrize("dialect", sorted(EPS_INSIDE_LOG))
@given(params=mapper_params(), u=st.floats(0.75, 0.95), corner=st.tuples(eighths, eighths), aspect=st.integers(-1, 1))
def test_eps_inside_the_log_lifts_sizes_just_below_a_threshold(dialect, params, u, corner, aspect):
    k_min, k_max, s0, k0 = params
    assume(k_min < k_max)
    threshold = k_max  # the top threshold: the level below it is inside the clamp range
    ratio = 2.0 ** (threshold - k0)
    side = s0 * ratio * (1.0 - u * EPS_INSIDE_LOG[dialect] / ratio)
    # Oblong boxes keep the area: sides side * 2**a and side / 2**a (exact scalings).
    x1, y1 = corner
    box = (x1, y1, x1 + side * 2.0**aspect - PLUS_ONE[dialect], y1 + side / 2.0**aspect - PLUS_ONE[dialect])
    expected = ref_levels.level_for_box(box, k_min, k_max, s0, k0, dialect=dialect)
    assert expected == threshold - k_min, "the drawn box must sit in the eps window (check the strategy)"
    ours = levels_for_boxes(_tensor([box], "float64"), k_min, k_max, s0, k0, dialect=dialect).tolist()
    assert ours == [expected], (box, ours, expected)
