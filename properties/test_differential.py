"""Differential properties: every implementation under test agrees with the float64 reference.

Bounds come from ``properties/tolerances.py`` (derived there from rounding);
third-party kernels computing coordinates in float32 or a half additionally
get the visible jump allowance at discontinuities of the definition
(``tolerances.jump_allowance``). Cases are drawn per implementation in every
dtype its record lists (``checks.cases_for``): the halves too where it takes
them (ours both, torchvision CPU float16 only, the ONNX runtimes neither).
"""
from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from roialign_suite.implementations import registry
from roialign_suite.properties.checks import (
    FULL_PRECISION,
    in_full_precision,
    require_differentiable,
    cases_for,
    check_agrees_with,
    check_at_least_as_accurate,
    check_backward_matches_reference,
    check_forward_matches_reference,
    outside_divergences,
    taken_dtype_names,
)
from roialign_suite.properties.strategies import ALL_KINDS, RoIAlignCase

# A sample exactly on y == H (5): it still counts, clamped to the last row.
EDGE_SAMPLE_Y_EQUALS_H = RoIAlignCase(shape=(1, 1, 5, 5), boxes=((0, 1.0, 4.0, 3.0, 6.0),), output_size=(1, 1),
                                      sampling_ratio=1)
# ... and exactly on x == -1 in the aligned convention (feature x = -1 - 0.5 + 1/2).
EDGE_SAMPLE_X_EQUALS_MINUS_1 = RoIAlignCase(shape=(1, 2, 4, 6), boxes=((0, -1.0, 1.0, 0.0, 3.0),), output_size=(1, 1),
                                            sampling_ratio=1, aligned=True)
BASELINE = registry.the_one("baseline")  # torchvision's CPU kernel


@pytest.mark.parametrize("case", [EDGE_SAMPLE_Y_EQUALS_H, EDGE_SAMPLE_X_EQUALS_MINUS_1], ids=["y=H", "x=-1"])
def test_edge_samples_match_reference(implementation, case):
    case = in_full_precision(implementation, case)
    check_forward_matches_reference(implementation, case)
    if implementation.differentiable:
        check_backward_matches_reference(implementation, case)


@given(data=st.data())
def test_forward_matches_reference(implementation, data):
    check_forward_matches_reference(implementation, data.draw(cases_for(implementation), label="case"))


@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_backward_matches_reference(implementation, data, grad_seed):
    require_differentiable(implementation)
    case = data.draw(cases_for(implementation), label="case")
    check_backward_matches_reference(implementation, case, grad_seed)


@given(data=st.data())
def test_half_forward_and_backward_within_half_rounding(implementation, data):
    """float16 and bfloat16 alone (where the record lists them): forward and gradient within the
    bound of the features' and the output's rounding to the half (``check_forward_matches_reference``)."""
    names = taken_dtype_names(implementation, ("float16", "bfloat16"))
    if not names:
        pytest.skip(f"{implementation.name} takes neither float16 nor bfloat16")
    case = data.draw(cases_for(implementation, dtype_names=names), label="case")
    check_forward_matches_reference(implementation, case)
    if implementation.differentiable:
        check_backward_matches_reference(implementation, case, case.seed)


@given(data=st.data())
def test_ours_at_least_as_accurate_as_torchvision(our_implementation, data):
    """In each dtype both take (float32: ours sums in float64; float16: ours in float32, torchvision in float16)."""
    case = data.draw(cases_for([our_implementation, BASELINE], dtype_names=("float32", "float16")), label="case")
    check_at_least_as_accurate(our_implementation, BASELINE, case)


@pytest.mark.parametrize("kind", ALL_KINDS)
@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_matches_reference_outside_recorded_divergences(implementation, kind, data, grad_seed):
    """Where the record documents divergences that the properties above show (not accepted
    refusals), the rest still follows the definition, forward and backward: the boxes and
    cases its rules name are left out, so a divergence hidden behind another shows up. One
    box kind at a time (as in test_edge_cases.py), so none is crowded out."""
    if not any(not d.excluded for d in implementation.divergences):
        pytest.skip(f"{implementation.name} records no divergence the properties above show")
    case = data.draw(cases_for(implementation, FULL_PRECISION, kinds=(kind,), min_boxes=1), label="case")
    assume(not implementation.diverges_on(case))
    case = outside_divergences(implementation, case)
    check_forward_matches_reference(implementation, case)
    if implementation.differentiable:
        check_backward_matches_reference(implementation, case, grad_seed)


TORCHVISION_CUDA = registry.by_name()["torchvision-cuda"]


@pytest.mark.cuda
@pytest.mark.skipif(TORCHVISION_CUDA.unavailable is not None, reason=f"torchvision-cuda: {TORCHVISION_CUDA.unavailable}")
@given(data=st.data())
def test_torchvision_cuda_agrees_with_ours(data):
    ours = registry.the_one("ours")
    check_agrees_with(TORCHVISION_CUDA, ours, data.draw(cases_for([TORCHVISION_CUDA, ours]), label="case"))
