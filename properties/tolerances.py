"""Error bounds for comparing a RoIAlign with the float64 reference, derived from rounding.

Notation: ``u`` is the unit roundoff of a dtype (2**-53 float64, 2**-24
float32, 2**-11 float16, 2**-8 bfloat16), ``eta`` half its smallest subnormal
spacing (2**-25 float16, 2**-134 bfloat16, 2**-150 float32): rounding ``x``
to nearest errs by at most ``u |x| + eta``. ``gamma(n) = n u / (1 - n u)``
bounds the relative error of ``n`` chained roundings (Higham, Accuracy and
Stability, Lemma 3.1; infinite when ``n u >= 1``: no bound).

Inputs are exact: a case's features and boxes are values of its dtype, and
the reference sees exactly those values, in float64.

Every output bin is ``sum_s w_s f_s / count`` with non-negative weights that
sum to at most 1, so:

* **summation**: accumulating ``n = 4 * grid_h * grid_w`` products (+8 for the
  weight products, the division and the final store) errs by at most
  ``gamma(n) * sum |w_s f_s|``; that magnitude is exactly the reference run on
  ``|features|`` (weights are non-negative). The reference's own float64 sums
  err by at most ``gamma(n, u64)`` of it too (its count, ``4 G + 2``, is
  within ``n``), and its run on ``|features|`` is low by at most that factor.
* **coordinates**: a sample coordinate is ~6 operations on values no larger
  than ``M = 2 * spatial_scale * max|box coordinate| + 2`` (feature pixels), so
  a kernel computing coordinates in dtype ``u`` misplaces a sample by at most
  ``delta = 16 u M``. Bilinear interpolation moves by at most
  ``|f(i+1) - f(i)| <= 2 max|f|`` per pixel per axis, so a bin moves by at
  most ``4 max|f| delta``.
* **output rounding**: the result ``x`` of the sums, ``|x - ref| <= E`` (the
  two terms above), is stored in the input dtype: ``u_out (|ref| + E) +
  eta_out`` more (:func:`output_rounding`). For the halves this is the main
  term: our kernel sums them in float32 and rounds once to the half.

Backward, one input-gradient pixel: the same with ``n`` = the taps landing on
it (+8). An implementation computing the reference's coordinates (float64)
hits exactly the reference's taps, counted per pixel (:func:`tap_counts`);
any other may hit others, so it gets every tap of the case.

Discontinuities. The definition jumps where a sample crosses ``y = -1``,
``y = H``, ``x = -1`` or ``x = W`` (it stops contributing), and where the
adaptive grid ``ceil(roi_size / pooled)`` crosses an integer. A kernel that
computes coordinates in float32 or a half (torchvision) may legitimately land
on the other side when a sample is within ``delta`` of such a point, so for
those :func:`jump_allowance` adds, per bin, the most those samples can change
it (``max|f| / count`` each; the whole RoI's range when the grid size itself
may change). Our kernel computes coordinates in float64 exactly as the
reference does, so it gets no allowance; and in float64 every implementation
computes the same coordinates, so the boundaries themselves are checked
there, exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from roialign_suite import reference
from roialign_suite.implementations.records import Arithmetic
from roialign_suite.properties.discrepancy import target_discrepancy
from roialign_suite.reference.roi_align import bin_taps, roi_align_backward, sample_points

UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
# Half the smallest subnormal spacing (finfo.tiny * u): the absolute part of rounding to nearest.
# float64's, 2**-1075, is not a float64: its smallest subnormal stands in (larger, so still a bound).
SUBNORMAL_FLOOR = {torch.float64: 2.0**-1074, torch.float32: 2.0**-150, torch.float16: 2.0**-25,
                   torch.bfloat16: 2.0**-134}
# Rounding steps in one sample coordinate, in units of u * M (see module docstring).
COORDINATE_ROUNDINGS = 16
# Extra roundings per bin besides the 4 products per sample: weight products,
# the division by count, the final store.
BIN_ROUNDINGS = 8


def unit_roundoff(dtype: torch.dtype) -> float:
    return UNIT_ROUNDOFF[dtype]


def gamma(n, u: float):
    """Bound on the relative error of ``n`` roundings of unit roundoff ``u`` (inf where ``n u >= 1``)."""
    if isinstance(n, Tensor):
        nu = n * u
        return torch.where(nu < 1, nu / (1 - nu).clamp(min=2.0**-60), torch.full_like(nu, math.inf))
    return n * u / (1 - n * u) if n * u < 1 else math.inf


def output_rounding(dtype: torch.dtype, value: Tensor, error) -> Tensor:
    """``error`` plus what storing a result within ``error`` of ``value`` in ``dtype`` adds:
    ``u (|value| + error) + eta`` (rounding to nearest, subnormals included)."""
    return error + UNIT_ROUNDOFF[dtype] * (value.abs() + error) + SUBNORMAL_FLOOR[dtype]


# The reference's arithmetic (and any float64 computation from float64 coordinates).
FLOAT64 = Arithmetic(torch.float64, torch.float64, torch.float64)



# --- the oracle ---------------------------------------------------------------------

@dataclass(frozen=True)
class Oracle:
    """The float64 reference on a case's exact inputs, and the magnitudes bounding its rounding."""

    value: Tensor  # float64
    magnitude: Tensor  # same, with |inputs|


def forward_oracle(case, features: Optional[Tensor] = None) -> Oracle:
    """The reference on ``case`` (or on ``features`` in place of the case's own)."""
    features = case.features("float64") if features is None else features.double()
    rois = case.rois("float64")
    value = reference.roi_align(features, rois, *case.params())
    magnitude = reference.roi_align(features.abs(), rois, *case.params())
    return Oracle(value, magnitude)


def backward_oracle(case, grad_output: Tensor) -> Oracle:
    rois = case.rois("float64").numpy()
    args = (tuple(case.shape), case.spatial_scale, case.sampling_ratio, case.aligned)
    g = grad_output.double().numpy()
    value = torch.from_numpy(roi_align_backward(g, rois, *args))
    magnitude = torch.from_numpy(roi_align_backward(np.abs(g), rois, *args))
    return Oracle(value, magnitude)


# --- bounds -------------------------------------------------------------------------

def coordinate_error(case, u: float) -> Tensor:
    """Per RoI, the most a sample coordinate can be misplaced when computed with roundoff ``u``."""
    if not case.boxes:
        return torch.zeros(0, dtype=torch.float64)
    coords = case.rois("float64")[:, 1:].abs().amax(dim=1)
    return COORDINATE_ROUNDINGS * u * (2 * case.spatial_scale * coords + 2)


def _max_abs(case, features: Optional[Tensor] = None) -> float:
    features = case.features("float64") if features is None else features
    return float(features.abs().max()) if features.numel() else 0.0


def _sums(terms: Tensor, u: float, magnitude: Tensor) -> Tensor:
    """Error of sums of ``terms`` roundings at ``u`` and of the reference's own float64 sums,
    on terms whose absolute values sum to ``magnitude`` as the reference computed it."""
    reference = gamma(terms, UNIT_ROUNDOFF[torch.float64])
    error = (gamma(terms, u) + reference) * magnitude / (1 - reference)
    return torch.where(magnitude > 0, error, torch.zeros_like(error))  # no terms: no error, even with gamma inf


def forward_sum_error(case, oracle: Oracle, arith: Arithmetic, features: Optional[Tensor] = None) -> Tensor:
    """Per output element, how far an implementation with ``arith`` may be from the oracle
    before it rounds to the output dtype: the sums and the coordinates (``E``, module docstring)."""
    k = case.num_boxes
    terms = torch.tensor(
        [4 * max(g.grid_h, 0) * max(g.grid_w, 0) + BIN_ROUNDINGS for g in case.geometries()],
        dtype=torch.float64,
    ).reshape(k, 1, 1, 1)
    summation = _sums(terms, unit_roundoff(arith.accumulation), oracle.magnitude)
    lipschitz = 4 * _max_abs(case, features)
    coordinates = lipschitz * coordinate_error(case, unit_roundoff(arith.coordinates)).reshape(k, 1, 1, 1)
    return summation + coordinates


def moved_samples_error(case, u: float, features: Optional[Tensor] = None) -> Tensor:
    """Per RoI (``[K, 1, 1, 1]``), how far the output may move when every sample coordinate moves by
    :func:`coordinate_error` at roundoff ``u`` (the Lipschitz term of :func:`forward_sum_error`; the
    map's bilinear interpolant changes by at most ``4 max|f|`` per pixel moved)."""
    return 4 * _max_abs(case, features) * coordinate_error(case, u).reshape(-1, 1, 1, 1)


def forward_tolerance(case, oracle: Oracle, arith: Arithmetic, features: Optional[Tensor] = None) -> Tensor:
    """Per output element, the most an implementation with ``arith`` may differ from the oracle
    (jumps at discontinuities excluded: see :func:`jump_allowance`). ``features`` replace the case's."""
    return output_rounding(arith.output, oracle.value, forward_sum_error(case, oracle, arith, features))


def tap_counts(case) -> Tensor:
    """``[N, 1, H, W]``: how many of the reference's taps (all RoIs) land on each pixel."""
    n, _, height, width = case.shape
    counts = np.zeros((n, 1, height, width))
    args = (case.output_size, case.spatial_scale, case.sampling_ratio, case.aligned)
    for box in case.boxes:
        for _, _, row, col, _ in bin_taps(box[1:], height, width, *args):
            counts[box[0], 0, row, col] += 1
    return torch.from_numpy(counts)


def backward_tolerance(case, grad_output: Tensor, oracle: Oracle, arith: Arithmetic) -> Tensor:
    """Per input-gradient element, the most an implementation with ``arith`` may differ."""
    # With the reference's coordinates a pixel gathers exactly its taps; otherwise
    # at most every tap of the case.
    taps = tap_counts(case) if arith.coordinates == torch.float64 else torch.tensor(4.0 * case.num_samples())
    summation = _sums(taps + BIN_ROUNDINGS, unit_roundoff(arith.accumulation), oracle.magnitude)
    # Misplacing a sample by delta moves each of its bilinear weights by at most
    # 2 delta; a pixel's error is bounded by the sum over every bin of
    # |grad_output| * 2 delta of its RoI, per channel.
    delta = coordinate_error(case, unit_roundoff(arith.coordinates)).reshape(-1, 1, 1, 1)
    per_channel = (2 * delta * grad_output.double().abs()).sum(dim=(0, 2, 3)).reshape(1, -1, 1, 1)
    return output_rounding(arith.output, oracle.value, summation + per_channel)


# --- discontinuities ----------------------------------------------------------------

def _near_integer(value: float, distance: float) -> bool:
    return abs(value - round(value)) <= distance


def grid_may_change(case, geometry, delta: float) -> bool:
    """Adaptive grid ``ceil(roi / pooled)`` within ``delta`` (roi units) of an integer, on either axis."""
    if case.sampling_ratio > 0:
        return False
    ph, pw = case.output_size
    # roi_size carries about twice a coordinate's error.
    return _near_integer(geometry.roi_h / ph, 2 * delta / ph) or _near_integer(geometry.roi_w / pw, 2 * delta / pw)


def _near_edge(pos: float, size: int, delta: float) -> bool:
    return abs(pos + 1.0) <= delta or abs(pos - size) <= delta


def jump_allowance(case, arith: Arithmetic, features: Optional[Tensor] = None) -> Tensor:
    """Per bin ``[K, 1, h, w]``, how much a kernel whose sample coordinates are rounded
    in ``arith.coordinates`` may jump relative to the float64 definition. Zero for float64,
    where every kernel computes the reference's coordinates."""
    if arith.coordinates == torch.float64:
        return torch.zeros((case.num_boxes, 1) + tuple(case.output_size), dtype=torch.float64)
    return rounding_jumps(case, arith.coordinates, features)


def rounding_jumps(case, coordinates: torch.dtype, features: Optional[Tensor] = None) -> Tensor:
    """Per bin ``[K, 1, h, w]``, how much the output may jump when sample coordinates are
    perturbed by rounding in ``coordinates`` (also float64: a metamorphic transformation
    rounds coordinates differently from the original)."""
    k = case.num_boxes
    allowance = torch.zeros((k, 1) + tuple(case.output_size), dtype=torch.float64)
    if k == 0:
        return allowance
    _, _, height, width = case.shape
    max_abs = _max_abs(case, features)
    deltas = coordinate_error(case, unit_roundoff(coordinates))
    for i, geometry in enumerate(case.geometries()):
        delta = float(deltas[i])
        if grid_may_change(case, geometry, delta):
            allowance[i] = 2 * max_abs  # the bin average may change to anything in range
            continue
        for ph, pw, y, x in sample_points(geometry, case.output_size):
            if _near_edge(y, height, delta) or _near_edge(x, width, delta):
                allowance[i, 0, ph, pw] += max_abs / geometry.count
    return allowance


def rois_near_discontinuity(case, arith: Arithmetic) -> List[int]:
    """RoIs that :func:`jump_allowance` gives any allowance."""
    allowance = jump_allowance(case, arith)
    return [i for i in range(case.num_boxes) if bool((allowance[i] > 0).any())]


# --- resolution ---------------------------------------------------------------------

def half_ulp(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Half the ``dtype`` spacing at ``|values|``: the most rounding to nearest can move them."""
    _, exponent = torch.frexp(values.double().abs())
    # |v| in [2**(e-1), 2**e): spacing 2**(e-1) * 2u; below the smallest normal, the subnormal spacing.
    binade = torch.ldexp(torch.ones_like(values, dtype=torch.float64), exponent - 1)
    binade = torch.where(values == 0, torch.zeros_like(binade), binade)  # frexp(0) has exponent 0
    return torch.clamp(binade, min=torch.finfo(dtype).tiny) * UNIT_ROUNDOFF[dtype]


def no_less_accurate_bound(reference_value: Tensor, their_error: Tensor, sum_error: Tensor,
                           dtype: torch.dtype) -> Tensor:
    """Elementwise, the most our error may be on ``dtype`` output: ``max(their error,
    max(half_ulp(ref), E) + E)``, ``E`` (``sum_error``) bounding our sums' distance from ``ref``.

    Ours is the sum ``x`` (``|x - ref| <= E``) rounded once to nearest: within
    ``half_ulp(x)`` of ``x``. When ``|x|`` is in ``ref``'s binade or below,
    ``half_ulp(x) <= half_ulp(ref)``: error at most ``half_ulp(ref) + E``. When
    above, the power of two between ``|ref|`` and ``|x|`` is in the dtype and
    within ``E`` of ``x``, so rounding moves ``x`` by at most ``E``: error at most
    ``2 E``. Either way at most ``max(half_ulp(ref), E) + E``: no kernel rounding
    to ``dtype`` can promise less, so the check asks that or torchvision's error.
    """
    ours = torch.maximum(half_ulp(reference_value, dtype), sum_error) + sum_error
    return torch.maximum(their_error, ours)


# --- comparison ---------------------------------------------------------------------

def assert_within(actual: Tensor, expected: Tensor, tolerance: Tensor, what: str, allowance: Optional[Tensor] = None):
    """``|actual - expected| <= tolerance (+ allowance)`` everywhere, or an AssertionError naming the worst element."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    bound = tolerance if allowance is None else tolerance + allowance
    error = (actual.double() - expected).abs()
    target_discrepancy(what, error, bound)  # steers targeted search (fuzzing) toward the worst cases
    excess = error - bound
    if excess.numel() == 0 or bool((excess <= 0).all()):
        return
    if not bool(torch.isfinite(actual).all()):
        index = tuple(int(i) for i in (~torch.isfinite(actual)).nonzero()[0])
    else:
        index = np.unravel_index(int(excess.argmax()), tuple(excess.shape))
        index = tuple(int(i) for i in index)
    raise AssertionError(
        f"{what} differs at {index}: got {float(actual[index])!r}, expected {float(expected[index])!r}, "
        f"error {float(error[index]):.3g} > bound {float(bound[index]):.3g} "
        f"({int((~(excess <= 0)).sum())} of {excess.numel()} elements out of bound)"  # NaN counts
    )
