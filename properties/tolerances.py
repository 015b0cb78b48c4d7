"""Error bounds for comparing a RoIAlign with the float64 reference, derived from rounding.

Notation: ``u`` is the unit roundoff of a dtype (2**-24 float32, 2**-53
float64), ``gamma(n) = n u / (1 - n u)`` bounds the relative error of ``n``
chained roundings (Higham, Accuracy and Stability, Lemma 3.1).

Every output bin is ``sum_s w_s f_s / count`` with non-negative weights that
sum to at most 1, so:

* **summation**: accumulating ``n = 4 * grid_h * grid_w`` products (+8 for the
  weight products, the division and the final store) errs by at most
  ``gamma(n) * sum |w_s f_s|``; that magnitude is exactly the reference run on
  ``|features|`` (weights are non-negative).
* **coordinates**: a sample coordinate is ~6 operations on values no larger
  than ``M = 2 * spatial_scale * max|box coordinate| + 2`` (feature pixels), so
  a kernel computing coordinates in dtype ``u`` misplaces a sample by at most
  ``delta = 16 u M``. Bilinear interpolation moves by at most
  ``|f(i+1) - f(i)| <= 2 max|f|`` per pixel per axis, so a bin moves by at
  most ``4 max|f| delta``.
* **output rounding**: storing the result in the input dtype: ``u_out |ref|``.

Discontinuities. The definition jumps where a sample crosses ``y = -1``,
``y = H``, ``x = -1`` or ``x = W`` (it stops contributing), and where the
adaptive grid ``ceil(roi_size / pooled)`` crosses an integer. A kernel that
computes coordinates in float32 (torchvision) may legitimately land on the
other side when a sample is within ``delta`` of such a point, so for
third-party float32 :func:`jump_allowance` adds, per bin, the most those
samples can change it (``max|f| / count`` each; the whole RoI's range when
the grid size itself may change). Our kernel computes coordinates in float64
exactly as the reference does, so it gets no allowance; and in float64 every
implementation computes the same coordinates, so the boundaries themselves
are checked there, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from torch import Tensor

from roialign_suite import reference
from roialign_suite.properties.discrepancy import target_discrepancy
from roialign_suite.reference.roi_align import roi_align_backward, sample_points

UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
# Rounding steps in one sample coordinate, in units of u * M (see module docstring).
COORDINATE_ROUNDINGS = 16
# Extra roundings per bin besides the 4 products per sample: weight products,
# the division by count, the final store.
BIN_ROUNDINGS = 8


def unit_roundoff(dtype: torch.dtype) -> float:
    return UNIT_ROUNDOFF[dtype]


def gamma(n, u: float):
    """Bound on the relative error of ``n`` roundings of unit roundoff ``u``."""
    return n * u / (1 - n * u)


@dataclass(frozen=True)
class Arithmetic:
    """Where an implementation rounds: sample coordinates, and sums."""

    coordinates: torch.dtype
    accumulation: torch.dtype
    output: torch.dtype


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


def forward_tolerance(case, oracle: Oracle, arith: Arithmetic, features: Optional[Tensor] = None) -> Tensor:
    """Per output element, the most an implementation with ``arith`` may differ from the oracle
    (jumps at discontinuities excluded: see :func:`jump_allowance`). ``features`` replace the case's."""
    k = case.num_boxes
    terms = torch.tensor(
        [4 * max(g.grid_h, 0) * max(g.grid_w, 0) + BIN_ROUNDINGS for g in case.geometries()],
        dtype=torch.float64,
    ).reshape(k, 1, 1, 1)
    summation = gamma(terms, unit_roundoff(arith.accumulation)) * oracle.magnitude
    lipschitz = 4 * _max_abs(case, features)
    coordinates = lipschitz * coordinate_error(case, unit_roundoff(arith.coordinates)).reshape(k, 1, 1, 1)
    rounding = unit_roundoff(arith.output) * oracle.value.abs()
    return summation + coordinates + rounding


def backward_tolerance(case, grad_output: Tensor, oracle: Oracle, arith: Arithmetic) -> Tensor:
    """Per input-gradient element, the most an implementation with ``arith`` may differ."""
    # A pixel gathers at most every tap of the case.
    terms = 4 * case.num_samples() + BIN_ROUNDINGS
    summation = gamma(terms, unit_roundoff(arith.accumulation)) * oracle.magnitude
    # Misplacing a sample by delta moves each of its bilinear weights by at most
    # 2 delta; a pixel's error is bounded by the sum over every bin of
    # |grad_output| * 2 delta of its RoI, per channel.
    delta = coordinate_error(case, unit_roundoff(arith.coordinates)).reshape(-1, 1, 1, 1)
    per_channel = (2 * delta * grad_output.double().abs()).sum(dim=(0, 2, 3)).reshape(1, -1, 1, 1)
    rounding = unit_roundoff(arith.output) * oracle.value.abs()
    return summation + per_channel + rounding


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


# --- float32 resolution -------------------------------------------------------------

def half_ulp_float32(values: Tensor) -> Tensor:
    """Half the float32 spacing at ``|values|``: the most rounding to nearest can move them."""
    _, exponent = torch.frexp(values.double().abs())
    # |v| in [2**(e-1), 2**e): spacing 2**(e-24); subnormal spacing is 2**-149.
    return torch.ldexp(torch.ones_like(values, dtype=torch.float64), (exponent - 25).clamp(min=-150))


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
        f"({int((excess > 0).sum())} of {excess.numel()} elements out of bound)"
    )
