"""The strategies keep their own promises (a property is only as good as what it draws)."""
from hypothesis import given, settings

from roialign_suite.properties.strategies import INSIDE, roi_align_cases


# Drawing is cheap (nothing runs a kernel), so this one draws far more than the profile.
@settings(max_examples=3000)
@given(case=roi_align_cases(kinds=INSIDE, min_boxes=1, min_side=2))
def test_inside_boxes_have_positive_sides_after_rounding(case):
    # Found by a fuzz campaign: y1 = 1e-300, y2 = 2e-300 collapsed to one value once the
    # half-pixel offset was added, so "inside" drew an empty box and the constant-map
    # property expected the constant where the definition gives 0.
    for _, x1, y1, x2, y2 in case.boxes:
        assert x2 > x1 and y2 > y1, case
