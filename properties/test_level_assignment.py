"""Properties of FPN level assignment, for ``impl.LevelMapper`` in every dialect and a user's LevelMapper.

The ``level_mapper`` fixture is a :class:`~roialign_suite.properties.level_strategies.MapperUnderTest`:
``impl.LevelMapper`` built with each ``dialect=``, and, with
``--roialign-level-mapper=MODULE:ATTR``, that class (torchvision's LevelMapper
constructor and call, e.g. ``torchvision.ops.poolers:LevelMapper``) in the
dialect ``--roialign-level-dialect`` says it follows (default torchvision).
Each mapper is built with its dialect's eps and held to that dialect's float64
formula (``reference.levels``) and to the invariants every dialect shares
(sizes as the dialect measures them: maskrcnn_benchmark adds 1 to each side).
"""
from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from roialign_suite import impl
from roialign_suite.impl.levels import DIALECTS
from roialign_suite.implementations.registry import load_object
from roialign_suite.properties.level_strategies import (
    DTYPES, MapperUnderTest, box_below_top_level, dtype_names, eighths, exact_boxes, level_cases, level_of,
    mapper_params, measured_box, shifts, sides, tensor,
)
from roialign_suite.reference import levels as ref_levels


def pytest_generate_tests(metafunc):
    if "level_mapper" in metafunc.fixturenames:
        spec = metafunc.config.getoption("roialign_level_mapper")
        params = [pytest.param(("impl", d), id=f"impl-{d}") for d in sorted(DIALECTS)]
        if spec:
            dialect = metafunc.config.getoption("roialign_level_dialect")
            params.append(pytest.param((spec, dialect), id=f"target:{spec}/{dialect}"))
        metafunc.parametrize("level_mapper", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def level_mapper(request) -> MapperUnderTest:
    """The LevelMapper class under test and the dialect it claims."""
    source, dialect = request.param
    if source == "impl":
        return MapperUnderTest(functools.partial(impl.LevelMapper, dialect=dialect), dialect, ours=True)
    return MapperUnderTest(load_object(source), dialect, ours=False)


# --- the dialect's formula -------------------------------------------------------------

@given(data=st.data())
def test_levels_equal_the_dialect_formula(level_mapper, data):
    """Each box's level is the claimed dialect's float64 formula on the box's coordinates, for boxes a fraction
    of a pixel below and above every threshold, ordinary, degenerate and inverted boxes, float32 and float64.

    Only a value within the dtype's rounding band of a threshold
    (``reference.levels.threshold_band``) may floor to the neighbouring level;
    the near-threshold boxes are drawn outside it (``level_strategies``).
    """
    dialect = level_mapper.dialect
    case = data.draw(level_cases(dialect, negative_areas=level_mapper.ours), label="case")
    k_min, k_max, s0, k0 = case.params
    levels = level_mapper(*case.params)(case.tensors())
    assert levels.dtype == torch.int64 and levels.shape == (len(case.intended),)
    band = ref_levels.threshold_band(DTYPES[case.dtype])
    for row, level, intended in zip(case.rows(), levels.tolist(), case.intended):
        value = ref_levels.level_value(row, s0, k0, dialect=dialect)
        expected = ref_levels.level_for_box(row, k_min, k_max, s0, k0, dialect=dialect)
        near = ref_levels.near_threshold(value, k_min, k_max, band)
        if intended is not None:
            assert not near and expected + k_min == intended, (
                f"strategy: box {row} was drawn outside the band on level {intended}, but its value is {value}")
        assert level == expected or (near and abs(level - expected) == 1), (
            f"box {row} ({case.dtype}): the {dialect} value is {value!r}, level {expected} "
            f"(0-based, k_min={k_min}); the mapper gave {level}")


@given(data=st.data())
def test_float32_and_float64_agree_outside_threshold_band(level_mapper, data):
    """A float32 box and the same box in float64 get the same level unless its value is within float32's band of a threshold."""
    case = data.draw(level_cases(level_mapper.dialect, level_mapper.ours, dtype_names=("float32",)), label="case")
    k_min, k_max, s0, k0 = case.params
    mapper = level_mapper(*case.params)
    in_float32 = mapper(case.tensors()).tolist()
    in_float64 = mapper([t.double() for t in case.tensors()]).tolist()
    band = ref_levels.threshold_band(torch.float32)
    for row, a, b in zip(case.rows(), in_float32, in_float64):
        if a != b:
            value = ref_levels.level_value(row, s0, k0, dialect=level_mapper.dialect)
            assert ref_levels.near_threshold(value, k_min, k_max, band), (row, value, a, b)


# --- invariants every dialect shares --------------------------------------------------------

@given(params=mapper_params(), images=st.lists(st.lists(exact_boxes(), max_size=5), min_size=1, max_size=3),
       dtype=dtype_names)
def test_level_in_range(level_mapper, params, images, dtype):
    k_min, k_max, s0, k0 = params
    levels = level_mapper(k_min, k_max, s0, k0)([tensor(boxes, dtype) for boxes in images])
    assert levels.dtype == torch.int64 and levels.shape == (sum(len(b) for b in images),)
    assert bool(((levels >= 0) & (levels <= k_max - k_min)).all())


@given(params=mapper_params(), box=exact_boxes(), grow_w=sides, grow_h=sides, dtype=dtype_names)
def test_monotone_in_box_size(level_mapper, params, box, grow_w, grow_h, dtype):
    mapper = level_mapper(*params)
    x1, y1, x2, y2 = box
    assert level_of(mapper, (x1, y1, x2 + grow_w, y2 + grow_h), dtype) >= level_of(mapper, box, dtype)


@given(params=mapper_params(), boxes=st.lists(exact_boxes(), min_size=1, max_size=8), dx=shifts, dy=shifts,
       dtype=dtype_names)
def test_translation_invariant(level_mapper, params, boxes, dx, dy, dtype):
    mapper = level_mapper(*params)
    moved = [(x1 + dx, y1 + dy, x2 + dx, y2 + dy) for x1, y1, x2, y2 in boxes]
    assert torch.equal(mapper([tensor(moved, dtype)]), mapper([tensor(boxes, dtype)]))


@given(data=st.data(), params=mapper_params(), dtype=dtype_names)
def test_doubling_both_sides_moves_up_one_level(level_mapper, data, params, dtype):
    k_min, k_max, s0, k0 = params
    p = level_mapper.plus_one
    box = data.draw(box_below_top_level(params, p))
    x1, y1, x2, y2 = box
    doubled = measured_box((x1, y1), 2 * (x2 - x1 + p), 2 * (y2 - y1 + p), p)
    value, doubled_value = (ref_levels.level_value(b, s0, k0, dialect=level_mapper.dialect) for b in (box, doubled))
    # The 1/8 grid may push a box out of range. Doubling the measured sides adds exactly 1 to
    # log2(sqrt(area) / s0), so the formula itself moves up one level unless eps inside the log
    # (log2(2q + eps) = log2(q + eps / 2) + 1) or rounding decides at a threshold: skip values within
    # the dtype's rounding band of one, and the few the dialect's eps keeps on the same level.
    assume(k_min <= value < k_max and math.floor(doubled_value) == math.floor(value) + 1)
    band = ref_levels.threshold_band(DTYPES[dtype])
    assume(not any(ref_levels.near_threshold(v, k_min - 1, k_max + 1, band) for v in (value, doubled_value)))
    mapper = level_mapper(k_min, k_max, s0, k0)
    assert level_of(mapper, doubled, dtype) == level_of(mapper, box, dtype) + 1


@given(params=mapper_params(), corner=st.tuples(eighths, eighths), aspect=st.integers(-2, 2), dtype=dtype_names)
def test_canonical_box_lands_on_canonical_level(level_mapper, params, corner, aspect, dtype):
    k_min, k_max, s0, k0 = params
    assume(k_min <= k0 <= k_max)
    # Measured area s0**2 exactly: s0 * 2**a wide, s0 / 2**a high.
    box = measured_box(corner, s0 * 2.0**aspect, s0 / 2.0**aspect, level_mapper.plus_one)
    assert level_of(level_mapper(k_min, k_max, s0, k0), box, dtype) == k0 - k_min


@given(params=mapper_params(), corner=st.tuples(eighths, eighths), j=st.integers(-3, 3), aspect=st.integers(-1, 1),
       dtype=dtype_names)
def test_power_of_two_sizes_land_on_upper_level(level_mapper, params, corner, j, aspect, dtype):
    k_min, k_max, s0, k0 = params
    # Measured area (s0 * 2**j)**2: its area, root, ratio and log2 are exact and eps >= 0.
    box = measured_box(corner, s0 * 2.0 ** (j + aspect), s0 * 2.0 ** (j - aspect), level_mapper.plus_one)
    expected = min(max(k0 + j, k_min), k_max) - k_min
    assert level_of(level_mapper(k_min, k_max, s0, k0), box, dtype) == expected
