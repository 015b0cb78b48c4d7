"""Differential properties: every implementation under test agrees with the float64 reference.

Bounds come from ``properties/tolerances.py`` (derived there from rounding);
third-party float32 kernels additionally get the visible jump allowance at
discontinuities of the definition (``tolerances.jump_allowance``).
"""
from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from roialign_suite.properties import implementations as registry
from roialign_suite.properties.checks import (
    check_agrees_with,
    check_backward_matches_reference,
    check_float32_at_least_as_accurate,
    check_forward_matches_reference,
    outside_divergences,
)
from roialign_suite.properties.strategies import ALL_KINDS, RoIAlignCase, roi_align_cases

# A sample exactly on y == H (5): it still counts, clamped to the last row.
EDGE_SAMPLE_Y_EQUALS_H = RoIAlignCase(shape=(1, 1, 5, 5), boxes=((0, 1.0, 4.0, 3.0, 6.0),), output_size=(1, 1),
                                      sampling_ratio=1)
# ... and exactly on x == -1 in the aligned convention (feature x = -1 - 0.5 + 1/2).
EDGE_SAMPLE_X_EQUALS_MINUS_1 = RoIAlignCase(shape=(1, 2, 4, 6), boxes=((0, -1.0, 1.0, 0.0, 3.0),), output_size=(1, 1),
                                            sampling_ratio=1, aligned=True)


@given(case=roi_align_cases())
@example(case=EDGE_SAMPLE_Y_EQUALS_H)
@example(case=EDGE_SAMPLE_X_EQUALS_MINUS_1)
def test_forward_matches_reference(implementation, case):
    check_forward_matches_reference(implementation, case)


@given(case=roi_align_cases(), grad_seed=st.integers(0, 2**16))
@example(case=EDGE_SAMPLE_Y_EQUALS_H, grad_seed=0)
@example(case=EDGE_SAMPLE_X_EQUALS_MINUS_1, grad_seed=0)
def test_backward_matches_reference(implementation, case, grad_seed):
    check_backward_matches_reference(implementation, case, grad_seed)


@pytest.mark.parametrize("kind", ALL_KINDS)
@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_matches_reference_outside_recorded_divergences(implementation, kind, data, grad_seed):
    """Where the record documents divergences that the properties above show (not accepted
    refusals), the rest still follows the definition, forward and backward: the boxes and
    cases its rules name are left out, so a divergence hidden behind another shows up. One
    box kind at a time (as in test_edge_cases.py), so none is crowded out."""
    if not any(not d.excluded for d in implementation.divergences):
        pytest.skip(f"{implementation.name} records no divergence the properties above show")
    case = data.draw(roi_align_cases(kinds=(kind,), min_boxes=1), label="case")
    assume(not implementation.diverges_on(case))
    case = outside_divergences(implementation, case)
    check_forward_matches_reference(implementation, case)
    if implementation.differentiable:
        check_backward_matches_reference(implementation, case, grad_seed)


@given(case=roi_align_cases(dtype_names=("float32",)))
def test_float32_ours_at_least_as_accurate_as_torchvision(our_implementation, case):
    check_float32_at_least_as_accurate(our_implementation, registry.by_name()["torchvision-cpu"], case)


TORCHVISION_CUDA = registry.by_name()["torchvision-cuda"]


@pytest.mark.cuda
@pytest.mark.skipif(TORCHVISION_CUDA.unavailable is not None, reason=f"torchvision-cuda: {TORCHVISION_CUDA.unavailable}")
@given(case=roi_align_cases())
def test_torchvision_cuda_agrees_with_ours(case):
    check_agrees_with(TORCHVISION_CUDA, registry.by_name()["numba"], case)
