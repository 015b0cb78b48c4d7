"""Differential properties: every implementation under test agrees with the float64 reference.

Bounds come from ``properties/tolerances.py`` (derived there from rounding);
third-party float32 kernels additionally get the visible jump allowance at
discontinuities of the definition (``tolerances.jump_allowance``).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from roialign_suite.properties.strategies import DTYPES, RoIAlignCase, case_for, note_if_testing, roi_align_cases
from roialign_suite.properties.tolerances import (
    arithmetic,
    assert_within,
    backward_oracle,
    backward_tolerance,
    forward_oracle,
    forward_tolerance,
    half_ulp_float32,
    jump_allowance,
    rois_near_discontinuity,
)
from roialign_suite.reference import registry

# A sample exactly on y == H (5): it still counts, clamped to the last row.
EDGE_SAMPLE_Y_EQUALS_H = RoIAlignCase(shape=(1, 1, 5, 5), boxes=((0, 1.0, 4.0, 3.0, 6.0),), output_size=(1, 1),
                                      sampling_ratio=1)
# ... and exactly on x == -1 in the aligned convention (feature x = -1 - 0.5 + 1/2).
EDGE_SAMPLE_X_EQUALS_MINUS_1 = RoIAlignCase(shape=(1, 2, 4, 6), boxes=((0, -1.0, 1.0, 0.0, 3.0),), output_size=(1, 1),
                                            sampling_ratio=1, aligned=True)


def check_forward_matches_reference(implementation, case: RoIAlignCase) -> None:
    """``implementation``'s output on ``case`` is within the derived bound of the float64 reference."""
    case = case_for(implementation, case)
    dtype = DTYPES[case.dtype]
    out = case.run(implementation.roi_align)
    assert out.dtype == dtype, f"output dtype {out.dtype}, expected {dtype}"
    oracle = forward_oracle(case)
    arith = arithmetic(implementation.ours, dtype)
    allowance = jump_allowance(case, arith)
    if bool((allowance > 0).any()):
        note_if_testing(f"jump allowance (third-party {dtype} coordinates) on RoIs {rois_near_discontinuity(case, arith)}")
    assert_within(out, oracle.value, forward_tolerance(case, oracle, arith), f"{implementation.name} forward",
                  allowance)


def grad_output_for(case: RoIAlignCase, seed: int) -> torch.Tensor:
    """A ``[K, C, h, w]`` upstream gradient in the case's dtype, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (case.num_boxes, case.shape[1]) + tuple(case.output_size)
    return torch.randn(shape, dtype=torch.float64, generator=gen).to(DTYPES[case.dtype])


def input_gradient(implementation, case: RoIAlignCase, grad_output: torch.Tensor) -> torch.Tensor:
    """``d<roi_align(x), grad_output>/dx`` through ``implementation``'s autograd."""
    features = case.features().requires_grad_(True)
    out = case.run(implementation.roi_align, features=features)
    (grad,) = torch.autograd.grad(out, features, grad_output)
    return grad


def check_backward_matches_reference(implementation, case: RoIAlignCase, grad_seed: int = 0) -> None:
    """``implementation``'s input gradient is within the derived bound of the reference's transpose."""
    case = case_for(implementation, case)
    dtype = DTYPES[case.dtype]
    arith = arithmetic(implementation.ours, dtype, backward=True)
    grad_output = grad_output_for(case, grad_seed)
    near = rois_near_discontinuity(case, arith)
    if near:
        # Third-party float32 samples within rounding of a discontinuity may
        # land on the other side; those RoIs get no upstream gradient here.
        note_if_testing(f"RoIs {near} near a discontinuity: their grad_output is zeroed for this {dtype} comparison")
        grad_output[near] = 0
    grad = input_gradient(implementation, case, grad_output)
    assert grad.dtype == dtype and grad.shape == torch.Size(case.shape)
    oracle = backward_oracle(case, grad_output)
    assert_within(grad, oracle.value, backward_tolerance(case, grad_output, oracle, arith),
                  f"{implementation.name} backward")


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


def check_float32_at_least_as_accurate(ours, theirs, case: RoIAlignCase) -> None:
    """Elementwise ``|ours - ref| <= max(|theirs - ref|, half an ulp of ref + ours' float64 sum error)``."""
    case = case_for(ours, case_for(theirs, case))
    oracle = forward_oracle(case)
    our_error = (case.run(ours.roi_align).double() - oracle.value).abs()
    their_error = (case.run(theirs.roi_align).double() - oracle.value).abs()
    # Ours rounds a float64 result once: half an ulp, plus that result's own float64 error.
    float64_error = forward_tolerance(case, oracle, arithmetic(True, torch.float64))
    bound = torch.maximum(their_error, half_ulp_float32(oracle.value) + float64_error)
    assert_within(our_error, torch.zeros_like(our_error), bound, f"{ours.name} float32 error vs {theirs.name}'s")


@given(case=roi_align_cases(dtype_names=("float32",)))
def test_float32_ours_at_least_as_accurate_as_torchvision(our_implementation, case):
    check_float32_at_least_as_accurate(our_implementation, registry.by_name()["torchvision-cpu"], case)


def check_agrees_with(implementation, other, case: RoIAlignCase) -> None:
    """Two implementations agree within the sum of their bounds against the reference."""
    case = case_for(implementation, case_for(other, case))
    dtype = DTYPES[case.dtype]
    oracle = forward_oracle(case)
    bound = torch.zeros_like(oracle.value)
    for each in (implementation, other):
        arith = arithmetic(each.ours, dtype)
        bound = bound + forward_tolerance(case, oracle, arith) + jump_allowance(case, arith)
    assert_within(case.run(implementation.roi_align), case.run(other.roi_align).double(), bound,
                  f"{implementation.name} vs {other.name}")


TORCHVISION_CUDA = registry.by_name()["torchvision-cuda"]


@pytest.mark.cuda
@pytest.mark.skipif(TORCHVISION_CUDA.unavailable is not None, reason=f"torchvision-cuda: {TORCHVISION_CUDA.unavailable}")
@given(case=roi_align_cases())
def test_torchvision_cuda_agrees_with_ours(case):
    check_agrees_with(TORCHVISION_CUDA, registry.by_name()["numba"], case)
