"""Our forward's two paths (``impl.cost_model``) give the same bits, so choosing one changes only time.

The gather path reads NCHW planes, the convert path a channels-last copy;
each output element is the same float64 (float32 for the halves) sum in the
same order, so no tolerance applies: any difference is a bug in one path.
The pooler's mix of paths over a pyramid's levels is checked in
``test_pooler_properties.py`` (``test_pooler_paths_agree_bitwise``).
"""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roialign_suite.impl.cost_model import forward_path
from roialign_suite.properties.checks import ALL_DTYPE_NAMES, assert_bitwise_equal, case_for, cases_for

# Up to 40 channels: the gather path's work items are blocks of 16 channels (impl.kernels.NCHW_CHANNEL_BLOCK),
# so a case can end a block early, fill one, or span three.
channel_counts = st.integers(1, 40)


@given(data=st.data(), channels=channel_counts)
def test_gather_and_convert_paths_agree_bitwise(our_implementation, data, channels):
    """``roi_align`` gathering from NCHW == ``roi_align`` on a channels-last copy, bit for bit, in every dtype and layout."""
    case = data.draw(cases_for(our_implementation, ALL_DTYPE_NAMES), label="case")
    case = case_for(our_implementation, case.replace(shape=(case.shape[0], channels) + case.shape[2:]))
    features, rois = case.features(), case.rois()
    outs = {}
    for path in ("gather", "convert"):
        with forward_path(path):
            outs[path] = case.run(our_implementation.roi_align, features=features, rois=rois)
    assert_bitwise_equal(outs["gather"], outs["convert"], "gather path vs convert path")
