"""Gradient properties: the backward is the forward's transpose, and agrees across implementations.

Forward-only implementations (``differentiable=False``: the ONNX runtimes)
skip these with that reason. Cases are drawn in every dtype the
implementation's record lists (halves included), except the adjoint
identity and gradcheck: float64 only, as each says.
"""
from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from roialign_suite.properties.strategies import DTYPES, INSIDE, roi_align_cases
from roialign_suite.properties.checks import (
    case_for,
    cases_for,
    check_adjoint_identity,
    check_backward_matches_reference,
    grad_output_for,
    input_gradient,
    overlapping,
    require_differentiable,
    require_float64,
)
from roialign_suite.properties.tolerances import SUBNORMAL_FLOOR, gamma, unit_roundoff
from roialign_suite.implementations import registry


ADJOINT_CASES = roi_align_cases(dtype_names=("float64",))


@given(case=ADJOINT_CASES, grad_seed=st.integers(0, 2**16))
def test_adjoint_identity(implementation, case, grad_seed):
    """``<f(x), g> == <x, f^T g>`` in float64 only: both sides are one sum, so in a lower
    precision the identity checks two roundings of it, not the transpose (the backward
    against the reference, in every dtype, does that)."""
    require_differentiable(implementation)
    require_float64(implementation, "the identity is checked in float64 only")
    check_adjoint_identity(implementation, case, grad_seed)


@given(case=ADJOINT_CASES, grad_seed=st.integers(0, 2**16))
def test_reference_adjoint_identity(case, grad_seed):
    """The oracle's own backward is the transpose of its forward."""
    check_adjoint_identity(registry.the_one("definition"), case, grad_seed)


SMALL_CASES = roi_align_cases(dtype_names=("float64",), max_boxes=3, max_channels=2, fpn=False, min_boxes=1).filter(
    lambda c: c.shape[2] * c.shape[3] <= 64
)


@given(case=SMALL_CASES)
def test_gradcheck(implementation, case):
    """torch.autograd.gradcheck: the backward matches finite differences (float64 only:
    finite differences need its precision)."""
    require_differentiable(implementation)
    require_float64(implementation, "finite differences need its precision")
    case = case_for(implementation, case)
    rois = case.rois()
    features = case.features().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: implementation.roi_align(x, rois, *case.params()), (features,), fast_mode=True
    )


@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_gradients_agree_on_several_images_with_overlapping_boxes(implementation, data, grad_seed):
    """The input gradient with N >= 2 images and overlapping boxes matches the reference's."""
    require_differentiable(implementation)
    case = data.draw(cases_for(implementation, min_images=2, min_boxes=1, max_boxes=3).map(overlapping), label="case")
    check_backward_matches_reference(implementation, case, grad_seed)


@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_gradient_mass_equals_grad_output_mass(implementation, data, grad_seed):
    """For boxes inside the map every sample's weights sum to 1 and every bin averages
    its samples, so the gradient of each image and channel sums to its grad_output."""
    require_differentiable(implementation)
    case = case_for(implementation, data.draw(cases_for(implementation, kinds=INSIDE, min_boxes=1, min_side=2),
                                              label="case"))
    g = grad_output_for(case, grad_seed)
    grad = input_gradient(implementation, case, g).double()
    index = torch.tensor([b[0] for b in case.boxes], dtype=torch.int64)  # int64 even with no box left
    expected = torch.zeros(case.shape[:2], dtype=torch.float64).index_add_(0, index, g.double().sum(dim=(2, 3)))
    # Accumulating every tap (in the sum dtype of the record: the halves' float32), each
    # pixel then rounded to the output dtype (u_out |pixel| + eta_out; the pixels' |values|
    # sum to at most (1 + gamma) scale), then the map and grad_output summed in float64.
    arith = implementation.arithmetic(DTYPES[case.dtype], backward=True)
    scale = torch.zeros(case.shape[:2], dtype=torch.float64).index_add_(0, index, g.double().abs().sum(dim=(2, 3)))
    accumulation = gamma(4 * case.num_samples() + 8, unit_roundoff(arith.accumulation))
    pixels = grad[0, 0].numel()
    map_sum = gamma(max(pixels, g.numel()), 2.0**-53)
    rounded = arith.output != arith.accumulation  # else the sums are stored as they are
    rounding = unit_roundoff(arith.output) * (1 + accumulation) if rounded else 0.0
    factor = (accumulation + rounding) * (1 + map_sum) + 2 * map_sum
    floor = pixels * SUBNORMAL_FLOOR[arith.output] * (1 + map_sum) if rounded else 0.0
    # An image without boxes has scale 0 and an exact zero gradient, even where gamma is inf.
    bound = torch.where(scale > 0, factor * scale, torch.zeros_like(scale)) + floor
    error = (grad.sum(dim=(2, 3)) - expected).abs()
    assert bool((error <= bound).all()), f"gradient mass {grad.sum(dim=(2, 3))} != grad_output mass {expected}"


# 1 and 2 threads cut the map's rows into different bands (impl.roi_align._row_bands), so RoIs
# straddle different band edges; 80 channels make every scatter a multi-vector loop.
@given(data=st.data(), grad_seed=st.integers(0, 2**16))
def test_backward_is_bitwise_deterministic(our_implementation, data, grad_seed):
    """Our backward gives the same bits on every run and with 1 or 2 threads (torch's count: our kernels follow it)."""
    cases = cases_for(our_implementation, min_boxes=2, min_images=2).map(
        lambda c: overlapping(c).replace(shape=(c.shape[0], 80) + c.shape[2:]))
    case = case_for(our_implementation, data.draw(cases, label="case"))
    g = grad_output_for(case, grad_seed)
    torch_threads = torch.get_num_threads()
    grads = []
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            grads.append(input_gradient(our_implementation, case, g))
    finally:
        torch.set_num_threads(torch_threads)
    assert torch.equal(grads[0], grads[1]), "two runs with 2 threads differ"
    assert torch.equal(grads[0], grads[2]), "1 thread and 2 threads differ"
