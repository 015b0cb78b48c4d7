"""The checks the properties are made of: each runs one implementation on one case and
asserts one promise, with the bound derived in ``tolerances``.

Test modules, the corpus replay and the fuzzer call these; nothing here is a
test itself.
"""
from __future__ import annotations

from typing import Optional

import pytest
import torch

from roialign_suite.properties.discrepancy import target_discrepancy
from roialign_suite.properties.strategies import (
    FULL_PRECISION,
    ALL_DTYPE_NAMES,
    DTYPES,
    RoIAlignCase,
    note_if_testing,
    note_reproduction,
    roi_align_cases,
)
from roialign_suite.properties.tolerances import (
    assert_within,
    backward_oracle,
    backward_tolerance,
    forward_oracle,
    forward_sum_error,
    forward_tolerance,
    coordinate_error,
    gamma,
    grid_may_change,
    jump_allowance,
    no_less_accurate_bound,
    rois_near_discontinuity,
    unit_roundoff,
)


def taken_dtype_names(implementation, names=ALL_DTYPE_NAMES):
    """The dtype names among ``names`` that ``implementation``'s record says it takes (each of
    ``implementations``, when given several: the dtypes all of them take)."""
    records = implementation if isinstance(implementation, (list, tuple)) else (implementation,)
    return tuple(n for n in names if all(DTYPES[n] in r.dtypes for r in records))


def cases_for(implementation, dtype_names=ALL_DTYPE_NAMES, **narrowing):
    """``roi_align_cases(**narrowing)`` in the dtypes of ``dtype_names`` its record lists (drawn per
    implementation, with ``data.draw``: one that does not take a dtype is never asked)."""
    return roi_align_cases(dtype_names=taken_dtype_names(implementation, dtype_names), **narrowing)


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
    return case.replace(boxes=tuple(case.boxes[k] for k in implementation.rows_outside_divergences(case)))


def check_forward_matches_reference(implementation, case: RoIAlignCase) -> None:
    """``implementation``'s output on ``case`` is within the derived bound of the float64 reference.

    On float16/bfloat16 the features and boxes are the half values (exact
    inputs, the reference sees them in float64), so the bound is what the
    implementation's arithmetic adds: its sums (float32 for ours, ``gamma(4 G
    + 8, u32) * ref(|f|)``), its coordinates (float64 for ours: nothing; the
    half for torchvision float16, plus the jump allowance), and the one
    rounding of the result ``x`` to the half, ``u_h (|ref| + E) + eta_h``
    (``u_h`` 2**-11 float16, 2**-8 bfloat16; ``eta_h`` 2**-25, 2**-134).
    """
    case = case_for(implementation, case)
    assert_forward_within_bound(implementation, case, case.run(implementation.roi_align))


def assert_forward_within_bound(implementation, case: RoIAlignCase, out: torch.Tensor,
                                features: Optional[torch.Tensor] = None, what: str = "forward") -> None:
    """``out``, ``implementation``'s on ``case`` (or on ``features`` in its place), is within the
    derived bound of the reference, plus the jump allowance of its coordinates."""
    dtype = DTYPES[case.dtype]
    assert out.dtype == dtype, f"output dtype {out.dtype}, expected {dtype}"
    oracle = forward_oracle(case, features)
    arith = implementation.arithmetic(dtype)
    allowance = jump_allowance(case, arith, features)
    if bool((allowance > 0).any()):
        note_if_testing(f"jump allowance (third-party {dtype} coordinates) on RoIs {rois_near_discontinuity(case, arith)}")
    assert_within(out, oracle.value, forward_tolerance(case, oracle, arith, features), f"{implementation.name} {what}",
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
    """``implementation``'s input gradient is within the derived bound of the reference's transpose.

    The upstream gradient is drawn in the case's dtype (a half's values, exact
    for the reference). For the halves ours sums each pixel's ``T`` taps in
    float32 (``gamma(T + 8, u32) * ref(|g|)``) and rounds once to the half
    (``u_h (|ref| + E) + eta_h``); a half accumulation would err by about
    ``T u_h`` of the magnitude, far over that.
    """
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
    assert_backward_within_bound(implementation, case, grad_output, input_gradient(implementation, case, grad_output))


def assert_backward_within_bound(implementation, case: RoIAlignCase, grad_output: torch.Tensor, grad: torch.Tensor,
                                 what: str = "backward") -> None:
    """``grad``, ``implementation``'s input gradient on ``case`` for ``grad_output``, is within the
    derived bound of the reference's."""
    dtype = DTYPES[case.dtype]
    assert grad.dtype == dtype and grad.shape == torch.Size(case.shape)
    oracle = backward_oracle(case, grad_output)
    arith = implementation.arithmetic(dtype, backward=True)
    assert_within(grad, oracle.value, backward_tolerance(case, grad_output, oracle, arith),
                  f"{implementation.name} {what}")


def check_at_least_as_accurate(ours, theirs, case: RoIAlignCase, features: Optional[torch.Tensor] = None) -> None:
    """Elementwise ``|ours - ref| <= max(|theirs - ref|, max(half_ulp(ref), E) + E)`` on the case's
    dtype (one both take: float32, float16; on ``features`` in place of the case's own), ``E``
    bounding our sums before the one rounding to the dtype (float64 sums for float32, float32
    for float16; derivation: ``tolerances.no_less_accurate_bound``)."""
    case = case_for(ours, case_for(theirs, case))
    dtype = DTYPES[case.dtype]
    oracle = forward_oracle(case, features)
    our_error = (case.run(ours.roi_align, features=features).double() - oracle.value).abs()
    their_error = (case.run(theirs.roi_align, features=features).double() - oracle.value).abs()
    sum_error = forward_sum_error(case, oracle, ours.arithmetic(dtype), features)
    bound = no_less_accurate_bound(oracle.value, their_error, sum_error, dtype)
    assert_within(our_error, torch.zeros_like(our_error), bound, f"{ours.name} {case.dtype} error vs {theirs.name}'s")


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


def require_float64(implementation, why: str) -> None:
    """Skip a property that needs float64 (``why``) on an implementation whose record does not take it."""
    if torch.float64 not in implementation.dtypes:
        pytest.skip(f"{implementation.name} does not take float64 (its record's dtypes); {why}")


def in_full_precision(implementation, case: RoIAlignCase) -> RoIAlignCase:
    """A fixed ``case`` in the most precise full-precision dtype the implementation takes."""
    return case.replace(dtype=taken_dtype_names(implementation, FULL_PRECISION)[0])


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


def assert_bitwise_equal(actual, expected, what: str) -> None:
    """``actual`` and ``expected`` hold the same values (NaN where the other has NaN); else an
    AssertionError naming the worst element."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    same = (actual == expected) | (actual.isnan() & expected.isnan())
    if not bool(same.all()):
        diff = (actual.double() - expected.double()).abs()
        # A NaN on one side only is the worst difference there is.
        diff = torch.where(actual.isnan() ^ expected.isnan(), torch.full_like(diff, float("inf")), diff.nan_to_num(0.0))
        index = tuple(int(i) for i in (diff == diff.max()).nonzero()[0]) if diff.numel() else ()
        raise AssertionError(f"{what}: not bitwise equal; worst at {index}: {actual[index]!r} vs {expected[index]!r}")


def check_adaptive_equals_explicit_grid(implementation, case: RoIAlignCase) -> int:
    """Each RoI of ``case`` (adaptive sampling) equals itself with ``sampling_ratio`` its grid,
    bitwise; returns how many RoIs could be checked (a square grid of at least 1, and for
    coordinates not in float64 an adaptive grid not within their rounding of changing)."""
    case = case_for(implementation, case)
    out = case.run(implementation.roi_align)
    arith = implementation.arithmetic(DTYPES[case.dtype])
    deltas = coordinate_error(case, unit_roundoff(arith.coordinates))
    rounded_grid = arith.coordinates != torch.float64
    checked = 0
    for k, geometry in enumerate(case.geometries()):
        grid = geometry.grid_h
        if grid != geometry.grid_w or grid < 1:
            continue  # no single sampling_ratio describes this RoI's grid
        if rounded_grid and grid_may_change(case, geometry, float(deltas[k])):
            continue  # such a kernel may round roi / output to the next integer
        explicit = case.replace(boxes=(case.boxes[k],), sampling_ratio=grid)
        assert_bitwise_equal(explicit.run(implementation.roi_align)[0], out[k], f"RoI {k} with sampling_ratio={grid}")
        checked += 1
    return checked


def overlapping(case: RoIAlignCase) -> RoIAlignCase:
    """Add, for every box, a copy half a feature pixel away on the next image: boxes overlap on every image."""
    n = case.shape[0]
    step = 0.5 / case.spatial_scale
    extra = tuple(((b + 1) % n, x1 + step, y1 + step, x2 + step, y2 + step) for b, x1, y1, x2, y2 in case.boxes)
    return case.replace(boxes=case.boxes + extra)
