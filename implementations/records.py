"""The record of one RoIAlign under test (:class:`Implementation`), its documented divergences
(:class:`Divergence`), and the divergences several kernels share.

A record holds everything the properties and benchmarks need to know about
one RoIAlign: how to call it (``roi_align``: CPU tensors in and out;
``native``: tensors already on its device, for timing), where it runs, which
dtypes it takes, where it rounds (:meth:`Implementation.arithmetic`), whether
it is differentiable, what only our kernel promises, its role in the
benchmarks, and its documented divergences from the definition, each with
its reason and the corpus cases that pin it. Entries that cannot run here
stay listed with the reason (``unavailable``), so a test skips with that
reason instead of silently leaving them out.

Imports neither Hypothesis nor pytest (the benchmarks use the records too).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, List, Optional, Tuple

import torch


@dataclass(frozen=True)
class Arithmetic:
    """Where an implementation rounds: sample coordinates, and sums."""

    coordinates: torch.dtype
    accumulation: torch.dtype
    output: torch.dtype


FLOAT_DTYPES = (torch.float32, torch.float64)
HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Divergence:
    """A documented way an implementation departs from the definition.

    ``boxes(case, geometry)`` selects the boxes it concerns (``None``: it does
    not depend on single boxes); ``cases(case)`` the cases it concerns (``None``:
    every case). Where ``excluded``, the generic properties take those boxes out
    of the cases they check on this implementation, visibly (an accepted
    refusal, e.g. raising on an empty sample grid); otherwise the generic
    properties show it and ``properties/test_runtime_conformance.py`` cuts it
    out by this rule. ``corpus`` names the pinned cases (a glob under
    ``properties/corpus/``) that replay it exactly.
    """

    name: str
    reason: str
    corpus: str
    boxes: Optional[Callable] = None
    cases: Optional[Callable] = None
    excluded: bool = False
    # The input dtype on which it concerns every case (OpenVINO's float64), or None.
    whole_dtype: Optional[str] = None

    def concerns_box(self, case, geometry) -> bool:
        return (self.cases is None or self.cases(case)) and self.boxes is not None and self.boxes(case, geometry)

    def concerns_case(self, case) -> bool:
        return self.boxes is None and (self.cases is None or self.cases(case))


def _negative_grid(case, geometry) -> bool:
    return geometry.grid_h * geometry.grid_w < 0


# Third-party kernels may raise on a box whose sample grid is negative (aligned,
# adaptive, inverted along one axis) where the definition takes no samples (0).
NEGATIVE_GRID_REFUSED = Divergence(
    "negative-sample-grid-refused",
    "a box inverted along one axis, aligned, adaptive grid: grid_h * grid_w < 0; the definition "
    "gives 0, the kernel may raise instead (torchvision CPU: 'cannot create std::vector larger than max_size()')",
    "*negative_sample_grid*",
    boxes=_negative_grid,
    excluded=True,
)


def spatial_scale_not_float32(case) -> bool:
    return float(torch.tensor(case.spatial_scale, dtype=torch.float32)) != case.spatial_scale


ONNX_SCALE_IN_FLOAT32 = Divergence(
    "onnx-spatial-scale-float32",
    "ONNX stores spatial_scale as a float attribute: in float64 a scale float32 cannot hold exactly "
    "(not a power of two) moves every sample",
    "known_divergences/*_float64_*",
    cases=lambda case: case.dtype == "float64" and spatial_scale_not_float32(case),
)
def on_empty_map(case, geometry) -> bool:
    return case.shape[2] == 0 or case.shape[3] == 0


# How many of the coordinates' roundings a box's extent can carry (its two ends, each scaled and shifted).
EXTENT_ROUNDINGS = 4


def adaptive_grid_may_round_empty(case, geometry, coordinates: torch.dtype) -> bool:
    """An adaptive grid axis of 1 that a kernel computing box coordinates in ``coordinates`` may
    make 0: the extent (feature pixels) is within that rounding of 0, so the box's two ends can
    round to one value (seen: OpenVINO, float32, a box 7e-7 feature pixels tall at y = 9.2 gave
    NaN, its empty-grid divergence, where the float64 grid is 1)."""
    if case.sampling_ratio > 0 or coordinates == torch.float64:
        return False
    eps = torch.finfo(coordinates).eps
    for start, extent, grid in ((geometry.start_h, geometry.roi_h, geometry.grid_h),
                                (geometry.start_w, geometry.roi_w, geometry.grid_w)):
        if grid == 1 and extent <= EXTENT_ROUNDINGS * eps * (abs(start) + abs(extent) + 1.0):
            return True
    return False


RUNTIME_EMPTY_MAP_UNINITIALISED = Divergence(
    "empty-map-uninitialised",
    "a box on a map with H = 0 or W = 0: the definition gives zeros; ONNX Runtime's and OpenVINO's CPU RoiAlign "
    "return their output buffer unwritten (whatever the memory held: 1.4e-45, 2e26, ...). Not pinned exactly "
    "(the values are not reproducible); zero_sizes.json shows it",
    "zero_sizes.json",
    boxes=on_empty_map,
)


def _own_input_dtype(dtype: torch.dtype, backward: bool) -> torch.dtype:
    return dtype


@dataclass(frozen=True)
class Implementation:
    """One RoIAlign under test; see the module docstring."""

    name: str
    roi_align: Callable  # torchvision.ops.roi_align's signature; CPU tensors in and out
    native: Optional[Callable] = None  # the same on tensors already on ``device`` (timed); default roi_align
    device: str = "cpu"
    # Our own kernels promise more than torchvision's contract: a clear error
    # on every bad input and a bitwise-deterministic backward.
    ours: bool = False
    # Verified by default (``--roialign-implementation`` overrides).
    verified_by_default: bool = False
    # The float64 definition itself: the oracle the others are compared with, not one of them
    # (never chosen for verification, left out of the agreement table).
    definition: bool = False
    # The kernel the benchmarks measure every speedup over (torchvision's CPU kernel).
    baseline: bool = False
    # Timed at every RoI count of the benchmarks' RoI sweeps (peers would add minutes).
    in_roi_sweeps: bool = False
    # A class with torchvision.ops.MultiScaleRoIAlign's constructor and call, swapped into
    # torchvision's Mask R-CNN by the model workloads (None: not timed there).
    multiscale_roi_align: Optional[Callable] = None
    # The Python distributions (pip names) it runs on beyond torch and numpy: a report records their versions.
    packages: Tuple[str, ...] = ()
    # The modules (import names) its kernel imports when first called: an isolated record's
    # worker zygote imports them once, so a new worker after a crash starts without that cost.
    preload: Tuple[str, ...] = ()
    # Its shipped expected-failures file (``properties/xfails/<name>``): the divergences the
    # properties show on it, each with its reason (``roialign-suite ecosystem`` passes it).
    xfails: Optional[str] = None
    # Why it is never timed (the float64 reference is a definition, too slow).
    not_timed: Optional[str] = None
    # Why it cannot run on this machine, or None when it can.
    unavailable: Optional[str] = None
    # False for forward-only entries (the ONNX runtimes): gradient properties skip them.
    differentiable: bool = True
    dtypes: Tuple[torch.dtype, ...] = FLOAT_DTYPES
    # The dtype sample coordinates are computed in (None: the input's), and the
    # dtype sums are accumulated in, per input dtype and direction.
    coordinates: Optional[torch.dtype] = None
    sums: Callable[[torch.dtype, bool], torch.dtype] = _own_input_dtype
    # The precision it computes in whatever the input dtype, where that is
    # lower than the input's (OpenVINO runs float64 models in float32).
    compute_dtype: Optional[torch.dtype] = None
    divergences: Tuple[Divergence, ...] = ()
    # How its multi-level pooler is built for the box-head benchmarks:
    # ``pooler(output_size, sampling_ratio, scales) -> module``; None: impl.Pooler
    # with this roi_align swapped in for ours.
    pooler: Optional[Callable] = None
    # A torch.library operator (``torch.ops.ns.name.default``) behind roi_align,
    # for opcheck (None when it is not one).
    operator: Optional[object] = field(default=None, compare=False)

    def __repr__(self) -> str:  # short ids in pytest parametrisation
        return self.name

    def __reduce__(self):
        """Pickled by name where ``registry.resolve`` rebuilds it (its callables and rules need not
        pickle: a spawned child process gets the same record); field by field otherwise."""
        from roialign_suite.implementations.registry import resolvable, resolve

        if resolvable(self.name):
            return resolve, (self.name,)
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    @property
    def timed_call(self) -> Callable:
        return self.native or self.roi_align

    def arithmetic(self, dtype: torch.dtype, backward: bool = False) -> Arithmetic:
        """Where it rounds on ``dtype`` input: coordinates, sums, output (bounds: ``properties.tolerances``)."""
        return Arithmetic(self.coordinates or dtype, self.sums(dtype, backward), dtype)

    def excluded_boxes(self, case) -> List[int]:
        """Rows of ``case`` that an accepted refusal (``Divergence.excluded``) concerns."""
        rules = [d for d in self.divergences if d.excluded]
        if not rules:
            return []
        return [k for k, g in enumerate(case.geometries()) if any(d.concerns_box(case, g) for d in rules)]

    def divergent_boxes(self, case) -> List[int]:
        """Rows of ``case`` any of its documented box divergences concerns."""
        return [k for k, g in enumerate(case.geometries()) if any(d.concerns_box(case, g) for d in self.divergences)]

    def rows_outside_divergences(self, case) -> List[int]:
        """Rows of ``case`` none of its documented box divergences concerns."""
        divergent = set(self.divergent_boxes(case))
        return [k for k in range(case.num_boxes) if k not in divergent]

    def diverges_on(self, case) -> List[Divergence]:
        """Its case-wide divergences that concern ``case``."""
        return [d for d in self.divergences if d.concerns_case(case)]
