"""The level strategies keep their promises: near-threshold boxes sit on their intended level, outside the band."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roialign_suite.properties.level_strategies import DTYPES, PLUS_ONE, level_cases, threshold_side
from roialign_suite.reference import levels as ref_levels


# Drawing is cheap (no mapper runs), so this draws far more than the profile.
@pytest.mark.parametrize("dialect", sorted(PLUS_ONE))
@settings(max_examples=500)
@given(data=st.data())
def test_near_threshold_boxes_are_outside_the_band_on_their_level(dialect, data):
    case = data.draw(level_cases(dialect, negative_areas=False))
    k_min, k_max, s0, k0 = case.params
    band = ref_levels.threshold_band(DTYPES[case.dtype])
    for row, intended in zip(case.rows(), case.intended):
        x1, y1, x2, y2 = row
        assert (x2 - x1 + PLUS_ONE[dialect]) * (y2 - y1 + PLUS_ONE[dialect]) >= 0, row  # no negative areas
        if intended is None:
            continue
        value = ref_levels.level_value(row, s0, k0, dialect=dialect)
        assert math.floor(value) == intended and not ref_levels.near_threshold(value, k_min, k_max, band), (row, value)
        # A fraction of a pixel from the threshold's measured side (plus the coordinates' rounding to the dtype).
        side = math.sqrt((x2 - x1 + PLUS_ONE[dialect]) * (y2 - y1 + PLUS_ONE[dialect]))
        threshold = threshold_side(intended + (value - intended > 0.5), s0, k0, dialect)
        assert abs(side - threshold) <= 1.0 + 1e-6 * max(map(abs, row)), (row, side, threshold)


@pytest.mark.parametrize("dialect", sorted(PLUS_ONE))
@pytest.mark.parametrize("k", range(-3, 4))
def test_threshold_side_gives_the_threshold(dialect, k):
    side = threshold_side(k + 4, 224, 4, dialect) - PLUS_ONE[dialect]
    assert ref_levels.level_value((0.0, 0.0, side, side), 224, 4, dialect=dialect) == pytest.approx(k + 4, abs=1e-12)
