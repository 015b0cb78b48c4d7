"""The checks the properties are made of: each runs one implementation on one case and
asserts one promise, with the bound derived in ``tolerances``.

Test modules, the corpus replay and the fuzzer call these; nothing here is a
test itself.
"""
from __future__ import annotations

import pytest
import torch

from roialign_suite.properties.discrepancy import target_discrepancy
from roialign_suite.properties.strategies import DTYPES, RoIAlignCase, note_if_testing, note_reproduction
from roialign_suite.properties.tolerances import (
    assert_within,
    backward_oracle,
    backward_tolerance,
    forward_oracle,
    forward_tolerance,
    gamma,
    half_ulp_float32,
    jump_allowance,
    rois_near_discontinuity,
    unit_roundoff,
)


def case_for(implementation, case: RoIAlignCase) -> RoIAlignCase:
    """``case`` as checked on ``implementation``, its reproduction noted: boxes its record
    accepts it refusing (``Divergence.excluded``: third-party kernels may raise on a
    negative sample grid) are taken out, visibly; ours must handle every box."""
    refused = implementation.excluded_boxes(case)
    if refused:
        reasons = "; ".join(d.name for d in implementation.divergences if d.excluded)
        note_if_testing(f"boxes {refused} not checked on {implementation.name}: an accepted refusal ({reasons})")
        case = case.replace(boxes=tuple(b for k, b in enumerate(case.boxes) if k not in refused))
    note_reproduction(case, implementation)
    return case


def outside_divergences(implementation, case: RoIAlignCase) -> RoIAlignCase:
    """``case`` less the boxes a documented divergence of ``implementation`` concerns (its record's rules)."""
    divergent = set(implementation.divergent_boxes(case))
    return case.replace(boxes=tuple(box for k, box in enumerate(case.boxes) if k not in divergent))


def check_forward_matches_reference(implementation, case: RoIAlignCase) -> None:
    """``implementation``'s output on ``case`` is within the derived bound of the float64 reference."""
    case = case_for(implementation, case)
    dtype = DTYPES[case.dtype]
    out = case.run(implementation.roi_align)
    assert out.dtype == dtype, f"output dtype {out.dtype}, expected {dtype}"
    oracle = forward_oracle(case)
    arith = implementation.arithmetic(dtype)
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
    arith = implementation.arithmetic(dtype, backward=True)
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


def check_float32_at_least_as_accurate(ours, theirs, case: RoIAlignCase) -> None:
    """Elementwise ``|ours - ref| <= max(|theirs - ref|, half an ulp of ref + ours' float64 sum error)``."""
    case = case_for(ours, case_for(theirs, case))
    oracle = forward_oracle(case)
    our_error = (case.run(ours.roi_align).double() - oracle.value).abs()
    their_error = (case.run(theirs.roi_align).double() - oracle.value).abs()
    # Ours rounds a float64 result once: half an ulp, plus that result's own float64 error.
    float64_error = forward_tolerance(case, oracle, ours.arithmetic(torch.float64))
    bound = torch.maximum(their_error, half_ulp_float32(oracle.value) + float64_error)
    assert_within(our_error, torch.zeros_like(our_error), bound, f"{ours.name} float32 error vs {theirs.name}'s")


def check_agrees_with(implementation, other, case: RoIAlignCase) -> None:
    """Two implementations agree within the sum of their bounds against the reference."""
    case = case_for(implementation, case_for(other, case))
    dtype = DTYPES[case.dtype]
    oracle = forward_oracle(case)
    bound = torch.zeros_like(oracle.value)
    for each in (implementation, other):
        arith = each.arithmetic(dtype)
        bound = bound + forward_tolerance(case, oracle, arith) + jump_allowance(case, arith)
    assert_within(case.run(implementation.roi_align), case.run(other.roi_align).double(), bound,
                  f"{implementation.name} vs {other.name}")


def require_differentiable(implementation) -> None:
    if not getattr(implementation, "differentiable", True):
        pytest.skip(f"{implementation.name} is forward-only (differentiable=False)")


def check_adjoint_identity(implementation, case: RoIAlignCase, grad_seed: int) -> None:
    """``<roi_align(x), g> == <x, roi_align_backward(g)>`` (float64)."""
    case = case_for(implementation, case)
    features = case.features().requires_grad_(True)
    g = grad_output_for(case, grad_seed)
    out = case.run(implementation.roi_align, features=features)
    (grad,) = torch.autograd.grad(out, features, g)
    forward_side = float((out.detach().double() * g.double()).sum())
    backward_side = float((features.detach().double() * grad.double()).sum())
    # Both sides are the same sum over taps of w * x * g, whatever coordinates the
    # implementation computes (as long as forward and backward agree); each errs by
    # at most gamma(taps per element + elements summed) * sum |w x g|, and with
    # non-negative weights sum |w x g| = <roi_align(|x|), |g|> (its own forward).
    magnitude = case.run(implementation.roi_align, features=features.detach().abs()).double()
    scale = float((magnitude * g.double().abs()).sum())
    terms = 4 * case.num_samples() + out.numel() + features.numel() + 8
    bound = 2 * gamma(terms, unit_roundoff(DTYPES[case.dtype])) * scale
    target_discrepancy(f"{implementation.name} adjoint", torch.tensor(abs(forward_side - backward_side)),
                       torch.tensor(bound))
    assert abs(forward_side - backward_side) <= bound, (
        f"<f(x), g> = {forward_side!r} but <x, f^T g> = {backward_side!r}: "
        f"difference {abs(forward_side - backward_side):.3g} > bound {bound:.3g}"
    )


def overlapping(case: RoIAlignCase) -> RoIAlignCase:
    """Add, for every box, a copy half a feature pixel away on the next image: boxes overlap on every image."""
    n = case.shape[0]
    step = 0.5 / case.spatial_scale
    extra = tuple(((b + 1) % n, x1 + step, y1 + step, x2 + step, y2 + step) for b, x1, y1, x2, y2 in case.boxes)
    return case.replace(boxes=case.boxes + extra)
