"""Edge cases behave like the reference: each box kind alone, no boxes, 1x1 maps.

The differential checks of ``test_differential.py`` draw all kinds mixed;
here each kind gets its own examples, so none is crowded out.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, note
from hypothesis import strategies as st

from roialign_suite.properties.strategies import DTYPES, RoIAlignCase, boxes_with_negative_grid, note_reproduction, roi_align_cases
from roialign_suite.properties.checks import (
    FULL_PRECISION,
    cases_for,
    check_backward_matches_reference,
    check_forward_matches_reference,
    taken_dtype_names,
)

EDGE_KINDS = ["outside", "huge", "degenerate", "inverted", "tiny", "border", "boundary_sample", "band",
              "level_threshold"]


def _differentiable(implementation) -> bool:
    return getattr(implementation, "differentiable", True)


@pytest.mark.parametrize("kind", EDGE_KINDS)
@given(data=st.data())
def test_box_kind_behaves_like_the_reference(implementation, kind, data):
    """Boxes of one kind only, both conventions, forward and (if differentiable) backward; in the
    full-precision dtypes the record takes (float64, float32), as every property draws."""
    case = data.draw(cases_for(implementation, FULL_PRECISION, kinds=(kind,), min_boxes=1), label="case")
    check_forward_matches_reference(implementation, case)
    if _differentiable(implementation):
        check_backward_matches_reference(implementation, case, grad_seed=case.seed)


@given(data=st.data())
def test_largest_adaptive_grid_behaves_like_the_reference(implementation, data):
    """A box spanning the sampling band with one bin along an axis: the adaptive grid takes
    ``size + 1`` samples per bin there, more than the map has rows (columns), every one counting."""
    case = data.draw(cases_for(implementation, FULL_PRECISION, kinds=("band",), sampling=(0, -1), min_boxes=1),
                     label="case")
    h, w = case.output_size
    case = case.replace(output_size=data.draw(st.sampled_from([(1, w), (h, 1), (1, 1)]), label="output_size"))
    check_forward_matches_reference(implementation, case)
    if _differentiable(implementation):
        check_backward_matches_reference(implementation, case, grad_seed=case.seed)


@given(data=st.data())
def test_one_by_one_map_behaves_like_the_reference(implementation, data):
    case = data.draw(cases_for(implementation, FULL_PRECISION, min_boxes=1), label="case")
    case = case.replace(shape=case.shape[:2] + (1, 1))
    check_forward_matches_reference(implementation, case)
    if _differentiable(implementation):
        check_backward_matches_reference(implementation, case, grad_seed=case.seed)


@pytest.mark.parametrize("dtype", FULL_PRECISION)
@pytest.mark.parametrize("as_list", [False, True], ids=["tensor", "list"])
def test_no_boxes(implementation, dtype, as_list):
    """K = 0 gives a ``[0, C, h, w]`` output and (if differentiable) a zero gradient."""
    if dtype not in taken_dtype_names(implementation, FULL_PRECISION):
        pytest.skip(f"{implementation.name} does not take {dtype} (its record's dtypes)")
    case = RoIAlignCase(shape=(2, 3, 5, 4), boxes=(), output_size=(2, 3), dtype=dtype)
    features = case.features().requires_grad_(True)
    rois = [torch.zeros((0, 4), dtype=DTYPES[dtype])] * 2 if as_list else case.rois()
    out = case.run(implementation.roi_align, features=features, rois=rois)
    assert out.shape == (0, 3, 2, 3) and out.dtype == DTYPES[dtype]
    if _differentiable(implementation):
        (grad,) = torch.autograd.grad(out.sum(), features, allow_unused=True)
        assert grad is None or (grad.shape == features.shape and not bool(grad.any()))


@given(case=roi_align_cases(kinds=("inverted",), aligned=True, sampling=(0, -1), min_boxes=1))
def test_negative_sample_grid_gives_zeros_or_a_refusal(implementation, case):
    """A box inverted along one axis has ``grid_h * grid_w < 0``: the definition takes no
    samples (0). Ours returns 0; a third-party kernel may instead raise, never return garbage."""
    rows = boxes_with_negative_grid(case)
    assume(rows)
    case = case.replace(boxes=tuple(case.boxes[k] for k in rows))
    note_reproduction(case, implementation)
    try:
        out = case.run(implementation.roi_align)
    except Exception as refusal:
        if implementation.ours:
            raise
        note(f"{implementation.name} refused: {type(refusal).__name__}: {refusal}")
        return
    assert not bool(out.any()), f"non-zero output {out.flatten().tolist()} for an empty sample grid"
