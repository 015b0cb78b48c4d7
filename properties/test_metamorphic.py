"""Metamorphic properties: transform the inputs, predict the output from the original.

The predictions need no oracle values: the reference supplies magnitudes for
the rounding bounds and, only at bins where rounding of the transformed boxes
can carry a sample across a discontinuity of the definition, the size of the
definition's own jump there (``transformed_bound``). Transformations that are
exact in binary floating point (power-of-two rescaling, permuting or
splitting RoIs) are checked bitwise.

Cases are drawn per implementation in every dtype its record lists, the
halves included: the bounds are ``tolerances``' (a half's output rounding
and the float32 sums), and where a transformation rounds inputs to the
dtype (the linear combination, the ramp, the moved boxes) its rounding is
part of the bound. Power-of-two rescaling is exact in every dtype unless a
scaled box leaves the dtype's range (float16 overflows at 65520): such
draws are discarded.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, note
from hypothesis import strategies as st

from roialign_suite.properties.checks import (
    assert_bitwise_equal,
    case_for,
    cases_for,
    check_adaptive_equals_explicit_grid,
    in_full_precision,
)
from roialign_suite.properties.strategies import DTYPES, INSIDE, NON_INVERTED, RoIAlignCase
from roialign_suite.properties.tolerances import (
    SUBNORMAL_FLOOR,
    Oracle,
    assert_within,
    forward_oracle,
    forward_tolerance,
    gamma,
    jump_allowance,
    moved_samples_error,
    rounding_jumps,
    unit_roundoff,
)


def magnitude(case: RoIAlignCase, features=None) -> torch.Tensor:
    """The reference on ``|features|``: bounds ``|roi_align(features)|`` elementwise."""
    return forward_oracle(case, None if features is None else features.abs()).value


def same_boxes_bound(implementation, case: RoIAlignCase, features, mag) -> torch.Tensor:
    """Rounding bound for calls that share the case's boxes (so the same sample
    coordinates and no jumps): summation and output rounding (``mag`` bounds |output|)."""
    arith = implementation.arithmetic(DTYPES[case.dtype])
    return forward_tolerance(case, Oracle(value=mag, magnitude=mag), arith, features)


def transformed_bound(implementation, case: RoIAlignCase, other: RoIAlignCase, other_features, align) -> torch.Tensor:
    """How far ``roi_align(case)`` and ``align(roi_align(other))`` may differ when ``other``
    is ``case`` transformed (its boxes rounded to the dtype).

    By the triangle inequality through the definition: each call is within its
    differential bound of the definition on its own case (its arithmetic: coordinates,
    sums, output; plus, for float32 coordinates, its jump allowance), and the two
    cases' definitions differ by how far the transformed boxes, rounded to the dtype,
    move the samples (the Lipschitz term at the dtype's roundoff, on both cases);
    where that can push a sample across a discontinuity (``rounding_jumps``), the
    definition itself may jump between the two cases, by exactly what the reference
    says: only those bins get that difference as allowance.
    """
    dtype = DTYPES[case.dtype]
    arith = implementation.arithmetic(dtype)
    u = unit_roundoff(dtype)
    mine, theirs = forward_oracle(case), forward_oracle(other, other_features)
    bound = (
        forward_tolerance(case, mine, arith) + jump_allowance(case, arith) + moved_samples_error(case, u)
        + align(forward_tolerance(other, theirs, arith, other_features) + jump_allowance(other, arith, other_features)
                + moved_samples_error(other, u, other_features))
    )
    near = (rounding_jumps(case, dtype) > 0) | align(rounding_jumps(other, dtype, other_features) > 0)
    definition_jump = torch.where(near, (mine.value - align(theirs.value)).abs(), torch.zeros_like(mine.value))
    return bound + definition_jump


# --- linearity and closed forms -------------------------------------------------

@given(data=st.data(), a=st.sampled_from([1.0, -1.0, 2.0, 0.5, -3.0]), b=st.sampled_from([1.0, -2.0, 0.25]))
def test_linear_in_the_features(implementation, data, a, b):
    """``roi_align(a x + b y) == a roi_align(x) + b roi_align(y)`` (same boxes)."""
    case = case_for(implementation, data.draw(cases_for(implementation), label="case"))
    x, y = case.features(), case.replace(seed=case.seed + 1).features()
    z = a * x + b * y
    out_x, out_y, out_z = (case.run(implementation.roi_align, features=f).double() for f in (x, y, z))
    # z itself is rounded to the dtype, three times (a x, b y, the sum), each within
    # u |v| + eta: |z - (a x + b y)| <= gamma(2) (|a x| + |b y|) + 4 eta, which RoIAlign
    # (weights summing to <= 1) carries to at most gamma(2) (|a| mag_x + |b| mag_y) + 4 eta.
    dtype = DTYPES[case.dtype]
    mag_x, mag_y = magnitude(case, x), magnitude(case, y)
    bound = (
        same_boxes_bound(implementation, case, z, abs(a) * mag_x + abs(b) * mag_y)
        + abs(a) * same_boxes_bound(implementation, case, x, mag_x)
        + abs(b) * same_boxes_bound(implementation, case, y, mag_y)
        + gamma(2, unit_roundoff(dtype)) * (abs(a) * mag_x + abs(b) * mag_y) + 4 * SUBNORMAL_FLOOR[dtype]
    )
    assert_within(out_z, a * out_x + b * out_y, bound, "roi_align(a x + b y) vs a roi_align(x) + b roi_align(y)")


@given(data=st.data(), constant=st.sampled_from([1.0, -2.5, 3072.0, 0.1]))
def test_constant_map_gives_the_constant(implementation, data, constant):
    """On a constant map every bin of a box inside the map is that constant (the constant in the dtype)."""
    case = case_for(implementation, data.draw(cases_for(implementation, kinds=INSIDE, min_boxes=1, min_side=2),
                                              label="case"))
    features = torch.full(case.shape, constant, dtype=DTYPES[case.dtype])
    out = case.run(implementation.roi_align, features=features)
    expected = torch.full(out.shape, float(features.flatten()[0]), dtype=torch.float64)
    oracle = Oracle(value=expected, magnitude=expected.abs())
    bound = forward_tolerance(case, oracle, implementation.arithmetic(DTYPES[case.dtype]), features)
    assert_within(out, expected, bound, f"constant {constant} map")


def linear_ramp(shape, slopes_y, slopes_x, offsets, dtype) -> torch.Tensor:
    """``f[n, c, y, x] = slopes_y[c] * y + slopes_x[c] * x + offsets[c]`` (integers: exact)."""
    n, c, h, w = shape
    ys = torch.arange(h, dtype=torch.float64).reshape(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float64).reshape(1, 1, 1, w)
    col = lambda v: torch.tensor(v, dtype=torch.float64).reshape(1, c, 1, 1)
    return (col(slopes_y) * ys + col(slopes_x) * xs + col(offsets)).expand(n, c, h, w).to(dtype).contiguous()


def bin_centre_values(case: RoIAlignCase, slopes_y, slopes_x, offsets) -> torch.Tensor:
    """The ramp at each bin's centre: the mean of its samples, which sit symmetrically around it."""
    k, c = case.num_boxes, case.shape[1]
    ph, pw = case.output_size
    out = torch.zeros((k, c, ph, pw), dtype=torch.float64)
    for i, g in enumerate(case.geometries()):
        cy = g.start_h + (torch.arange(ph, dtype=torch.float64) + 0.5) * g.bin_h
        cx = g.start_w + (torch.arange(pw, dtype=torch.float64) + 0.5) * g.bin_w
        for ch in range(c):
            out[i, ch] = slopes_y[ch] * cy[:, None] + slopes_x[ch] * cx[None, :] + offsets[ch]
    return out


@given(data=st.data())
def test_linear_ramp_gives_the_bin_centres(implementation, data):
    """On ``a y + b x + c`` each bin of a box inside the map is the ramp at the bin centre."""
    case = case_for(implementation, data.draw(cases_for(implementation, kinds=INSIDE, min_boxes=1, min_side=2),
                                              label="case"))
    channels = case.shape[1]
    small = st.lists(st.integers(-3, 3), min_size=channels, max_size=channels)
    slopes_y, slopes_x, offsets = data.draw(small), data.draw(small), data.draw(small)
    ramp = linear_ramp(case.shape, slopes_y, slopes_x, offsets, torch.float64)
    features = ramp.to(DTYPES[case.dtype])
    sums = implementation.arithmetic(DTYPES[case.dtype]).accumulation
    if sums in (torch.float16, torch.bfloat16):
        # A kernel whose record sums a bin in half precision overflows to inf once the bin's sum
        # passes the dtype's largest value (torchvision CPU and IPEX in float16, finding I3:
        # docs/findings/ipex_float16_sum_overflow.py); the ramp's large values reach that.
        samples_per_bin = max(g.count for g in case.geometries())
        assume(samples_per_bin * float(features.abs().max()) < torch.finfo(sums).max)
    out = case.run(implementation.roi_align, features=features)
    expected = bin_centre_values(case, slopes_y, slopes_x, offsets)
    magnitude = torch.full_like(expected, float(features.abs().max()))
    # The ramp's integers are exact up to 2**24 in float32, 2048 in float16, 256 in
    # bfloat16; beyond, each pixel is off by its rounding, and a bin (weights summing
    # to 1) by at most the largest of them.
    input_rounding = float((features.double() - ramp).abs().max())
    bound = forward_tolerance(case, Oracle(expected, magnitude), implementation.arithmetic(DTYPES[case.dtype]),
                              features) + input_rounding
    assert_within(out, expected, bound, "linear ramp vs bin centres")


# --- geometric transformations ----------------------------------------------------

@given(
    data=st.data(),
    shift=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
)
def test_integer_translation(implementation, data, shift, pad):
    """Moving the map by whole feature pixels inside a larger one, and its boxes with it, changes nothing."""
    case = case_for(implementation, data.draw(cases_for(implementation, kinds=INSIDE, min_boxes=1, min_side=2),
                                              label="case"))
    n, c, h, w = case.shape
    (ty, tx), (py, px) = shift, pad
    features = case.features()
    moved = torch.zeros((n, c, h + ty + py, w + tx + px), dtype=features.dtype)
    moved[:, :, ty : ty + h, tx : tx + w] = features
    s = case.spatial_scale
    boxes = tuple((b, x1 + tx / s, y1 + ty / s, x2 + tx / s, y2 + ty / s) for b, x1, y1, x2, y2 in case.boxes)
    moved_case = case.replace(shape=tuple(moved.shape), boxes=boxes)
    note(f"translated by (y, x) = {shift} feature pixels: {moved_case!r}")
    out = case.run(implementation.roi_align)
    out_moved = moved_case.run(implementation.roi_align, features=moved)
    bound = transformed_bound(implementation, case, moved_case, moved, align=lambda t: t)
    assert_within(out_moved, out.double(), bound, "translated map and boxes")


def flippable(case: RoIAlignCase, axis: int) -> RoIAlignCase:
    """Keep boxes the flip maps onto themselves: not inverted, and in the legacy
    convention at least one feature pixel long (shorter ones are stretched from their start)."""
    low, high = (1, 3) if axis == 3 else (2, 4)
    minimum = 0.0 if case.aligned else 1.0
    keep = tuple(b for b in case.boxes if (b[high] - b[low]) * case.spatial_scale >= minimum)
    return case.replace(boxes=keep)


def flipped(case: RoIAlignCase, axis: int) -> RoIAlignCase:
    """The case's boxes mirrored like ``features.flip(axis)`` (axis 2: rows, 3: columns).

    Feature coordinate ``c`` maps to ``size - 1 - c``; in image pixels that is
    ``x -> (size - 1 + 2 * offset) / scale - x`` with offset 0.5 when aligned.
    """
    size = case.shape[axis]
    mirror = (size - 1 + (1.0 if case.aligned else 0.0)) / case.spatial_scale
    low, high = (1, 3) if axis == 3 else (2, 4)
    boxes = []
    for box in case.boxes:
        b = list(box)
        b[low], b[high] = mirror - box[high], mirror - box[low]
        boxes.append(tuple(b))
    return case.replace(boxes=tuple(boxes))


@given(data=st.data(), axis=st.sampled_from([3, 2]))
def test_flip(implementation, data, axis):
    """Flipping the map and mirroring the boxes flips each output along the same axis."""
    case = flippable(data.draw(cases_for(implementation, kinds=NON_INVERTED), label="case"), axis)
    case = case_for(implementation, case)
    mirrored = flipped(case, axis)
    note(f"mirrored along axis {axis}: {mirrored!r}")
    features = case.features()
    mirrored_features = features.flip(axis)
    out = case.run(implementation.roi_align)
    out_mirrored = mirrored.run(implementation.roi_align, features=mirrored_features)
    bound = transformed_bound(implementation, case, mirrored, mirrored_features, align=lambda t: t.flip(axis))
    assert_within(out_mirrored.flip(axis), out.double(), bound, f"flip along axis {axis}")


@given(data=st.data(), factor=st.sampled_from([2.0, 0.5, 4.0, 0.25]))
def test_power_of_two_rescaling_is_exact(implementation, data, factor):
    """Boxes times 2**k with ``spatial_scale`` divided by 2**k: every product is exact, so the output is bitwise equal."""
    case = case_for(implementation, data.draw(cases_for(implementation), label="case"))
    boxes = tuple((b,) + tuple(v * factor for v in box) for b, *box in case.boxes)
    scaled = case.replace(boxes=boxes, spatial_scale=case.spatial_scale / factor)
    assume(scaled.boxes == boxes)  # in the dtype's range (and above its subnormals): exact
    note(f"rescaled: {scaled!r}")
    assert_bitwise_equal(scaled.run(implementation.roi_align), case.run(implementation.roi_align),
                         f"boxes x{factor}, spatial_scale /{factor}")


# --- RoI bookkeeping --------------------------------------------------------------

@given(data=st.data())
def test_permuting_boxes_permutes_outputs(implementation, data):
    """Each RoI is computed on its own: permuting the boxes permutes the outputs, bitwise."""
    case = case_for(implementation, data.draw(cases_for(implementation, min_boxes=2), label="case"))
    order = data.draw(st.permutations(range(case.num_boxes)))
    permuted = case.replace(boxes=tuple(case.boxes[i] for i in order))
    out = case.run(implementation.roi_align)
    assert_bitwise_equal(permuted.run(implementation.roi_align), out[list(order)], f"boxes permuted by {order}")


@given(data=st.data())
def test_splitting_the_batch_by_image_changes_nothing(implementation, data):
    """Running each image alone (its boxes re-indexed to 0) gives the same rows, bitwise."""
    case = case_for(implementation, data.draw(cases_for(implementation, min_images=2, min_boxes=1), label="case"))
    features = case.features()
    out = case.run(implementation.roi_align)
    for image in range(case.shape[0]):
        rows = [k for k, box in enumerate(case.boxes) if box[0] == image]
        alone = case.replace(shape=(1,) + case.shape[1:], boxes=tuple((0,) + case.boxes[k][1:] for k in rows))
        out_alone = alone.run(implementation.roi_align, features=features[image : image + 1])
        assert_bitwise_equal(out_alone, out[rows], f"image {image} alone")


@given(data=st.data())
def test_boxes_as_per_image_list_equal_the_tensor_form(implementation, data):
    """``boxes`` as a list of per-image ``Tensor[L, 4]`` equals the ``Tensor[K, 5]`` form, bitwise."""
    case = case_for(implementation, data.draw(cases_for(implementation, min_images=2, min_boxes=1), label="case"))
    rois = case.rois()
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(case.shape[0])]
    order = [k for i in range(case.shape[0]) for k in range(case.num_boxes) if case.boxes[k][0] == i]
    out = case.run(implementation.roi_align)
    assert_bitwise_equal(case.run(implementation.roi_align, rois=per_image), out[order], "per-image box list")


def squared(case: RoIAlignCase) -> RoIAlignCase:
    """Square output and square boxes (side = the box height), so the adaptive grid is square."""
    side = min(case.output_size)
    boxes = tuple((b, x1, y1, x1 + (y2 - y1), y2) for b, x1, y1, x2, y2 in case.boxes)
    return case.replace(output_size=(side, side), boxes=boxes)


def finite_boxes(case: RoIAlignCase) -> bool:
    return all(math.isfinite(v) for box in case.boxes for v in box)


@given(data=st.data())
def test_adaptive_sampling_equals_the_explicit_ceil_grid(implementation, data):
    """Adaptive sampling of a RoI equals ``sampling_ratio = ceil(roi_size / output_size)``, bitwise."""
    # Squaring widens a box to its height: past a half's range (float16 ends at 65504) the
    # new corner is infinite, bad input rather than an adaptive grid.
    case = data.draw(cases_for(implementation, sampling=(0, -1), min_boxes=1).map(squared).filter(finite_boxes),
                     label="case")
    assume(check_adaptive_equals_explicit_grid(implementation, case) > 0)


# roi / output = 4 / 2: exactly an integer, where ceil and floor + 1 part.
INTEGER_RATIO = RoIAlignCase(shape=(1, 2, 6, 6), boxes=((0, 1.0, 1.0, 5.0, 5.0),), output_size=(2, 2), sampling_ratio=0)


def test_adaptive_sampling_at_an_integer_ratio(implementation):
    case = in_full_precision(implementation, INTEGER_RATIO)
    if implementation.arithmetic(DTYPES[case.dtype]).coordinates != torch.float64:
        pytest.skip(f"{implementation.name} computes coordinates in float32: roi / output = 4 / 2 lies within their "
                    "rounding of the other grid, so the fixed case is not checkable (the drawn cases are)")
    assert check_adaptive_equals_explicit_grid(implementation, case) == 1
