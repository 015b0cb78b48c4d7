"""The implementations the suite verifies and times: one :class:`Implementation` record each.

A record holds everything the properties and benchmarks need to know about
one RoIAlign: how to call it (``roi_align``: CPU tensors in and out;
``native``: tensors already on its device, for timing), where it runs, which
dtypes it takes, where it rounds (:meth:`Implementation.arithmetic`), whether
it is differentiable, what only our kernel promises, and its documented
divergences from the definition, each with its reason and the corpus cases
that pin it. Adding an implementation is adding one record to :func:`builtin`
(or naming one with ``--roialign-target=MODULE:ATTR``: :func:`target`).
Entries that cannot run here stay listed with the reason, so a test skips
with that reason instead of silently leaving them out.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field, fields
from typing import Callable, Dict, List, Optional, Tuple

import torch

from roialign_suite import impl, reference
from roialign_suite.implementations import ncnn, opencv_dnn
from roialign_suite.properties.tolerances import Arithmetic
from roialign_suite.reference import runtimes, torchvision_ops
from roialign_suite.reference.pooler import TorchvisionPooler
from roialign_suite.reference.roi_align import sample_points

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


def _spatial_scale_not_float32(case) -> bool:
    return float(torch.tensor(case.spatial_scale, dtype=torch.float32)) != case.spatial_scale


ONNX_SCALE_IN_FLOAT32 = Divergence(
    "onnx-spatial-scale-float32",
    "ONNX stores spatial_scale as a float attribute: in float64 a scale float32 cannot hold exactly "
    "(not a power of two) moves every sample",
    "known_divergences/*_float64_*",
    cases=lambda case: case.dtype == "float64" and _spatial_scale_not_float32(case),
)
OPENVINO_FLOAT64_IN_FLOAT32 = Divergence(
    "openvino-float64-in-float32",
    "OpenVINO's CPU plugin runs float64 models in float32",
    "known_divergences/openvino_float64_matches_reference_*",
    cases=lambda case: case.dtype == "float64",
    whole_dtype="float64",
)
OPENVINO_EMPTY_GRID_NAN = Divergence(
    "openvino-empty-grid-nan",
    "a zero-width or zero-height box with aligned=True and an adaptive grid has 0 samples: OpenVINO "
    "divides 0 by 0 (NaN) where the definition gives 0",
    "known_divergences/openvino_zero_size_box_adaptive_grid_aligned.json",
    boxes=lambda case, g: g.grid_h * g.grid_w == 0,
    cases=lambda case: case.aligned and case.sampling_ratio <= 0,
)


def _on_empty_map(case, geometry) -> bool:
    return case.shape[2] == 0 or case.shape[3] == 0


# torchvision's CPU kernel reads pixel (H - 1, W - 1) = (-1, ...) of a map without pixels.
TORCHVISION_EMPTY_MAP_SEGFAULT = Divergence(
    "empty-map-segfault",
    "a box on a map with H = 0 or W = 0: the definition gives zeros (no pixel to sample); torchvision's CPU "
    "kernel clamps the sample to row H - 1 = -1 and reads outside the map: the process dies with SIGSEGV",
    "known_divergences/torchvision_cpu_empty_map_segfault.json",
    boxes=_on_empty_map,
    excluded=True,
)


def _samples_outside_the_map(case, geometry) -> bool:
    _, _, height, width = case.shape
    return any(y < -1 or y > height or x < -1 or x > width
               for _, _, y, x in sample_points(geometry, case.output_size))


# torchvision's pure-PyTorch RoIAlign (torchvision.ops.roi_align._roi_align), four ways.
TORCHVISION_PYTHON_OUTSIDE_SAMPLES_COUNT = Divergence(
    "outside-samples-count",
    "a sample outside [-1, H] x [-1, W] contributes 0 by the definition (and torchvision's C++/CUDA kernels); "
    "torchvision's pure-PyTorch _roi_align has no such test: it clamps the sample onto the border row/column "
    "and counts it",
    "known_divergences/torchvision_python_sample_outside_map_counts_*.json",
    boxes=_samples_outside_the_map,
)


def _adaptive(case) -> bool:
    return case.sampling_ratio <= 0


TORCHVISION_PYTHON_GRID_CAPPED = Divergence(
    "adaptive-grid-capped-at-map-size",
    "an adaptive grid of more samples per bin than the map has rows (columns): _roi_align samples at most H "
    "(W) of them (torch.arange(height) masked by the grid) but still divides by the full grid_h * grid_w",
    "known_divergences/torchvision_python_adaptive_grid_exceeds_map.json",
    boxes=lambda case, g: g.grid_h > case.shape[2] or g.grid_w > case.shape[3],
    cases=_adaptive,
)
TORCHVISION_PYTHON_EMPTY_GRID_NAN_GRADIENT = Divergence(
    "empty-adaptive-grid-nan-gradient",
    "aligned=True, an adaptive grid with no samples (a zero-size box, or one inverted along one axis): the "
    "output is 0 as defined, but _roi_align divides bin_size by the grid of 0 and masks the result with "
    "torch.where, whose backward turns the masked inf/NaN into a NaN gradient",
    "known_divergences/torchvision_python_empty_adaptive_grid_nan_gradient.json",
    boxes=lambda case, g: g.grid_h * g.grid_w <= 0,
    cases=lambda case: case.aligned and _adaptive(case),
)
TORCHVISION_PYTHON_EMPTY_MAP_REFUSED = Divergence(
    "empty-map-refused",
    "a box on a map with H = 0 or W = 0 and a fixed grid: _roi_align indexes the empty map and raises "
    "IndexError where the definition gives zeros (an accepted refusal; the adaptive grid computes the zeros)",
    "zero_sizes.json",
    boxes=_on_empty_map,
    cases=lambda case: not _adaptive(case),
    excluded=True,
)


RUNTIME_EMPTY_MAP_UNINITIALISED = Divergence(
    "empty-map-uninitialised",
    "a box on a map with H = 0 or W = 0: the definition gives zeros; ONNX Runtime's and OpenVINO's CPU RoiAlign "
    "return their output buffer unwritten (whatever the memory held: 1.4e-45, 2e26, ...). Not pinned exactly "
    "(the values are not reproducible); zero_sizes.json shows it",
    "zero_sizes.json",
    boxes=_on_empty_map,
)


def _own_input_dtype(dtype: torch.dtype, backward: bool) -> torch.dtype:
    return dtype


def _our_sums(dtype: torch.dtype, backward: bool) -> torch.dtype:
    """Where our kernels sum: the halves in float32; float32/float64 forwards in float64,
    their backwards in the input dtype (gradients accumulate in place)."""
    if dtype in HALF_DTYPES:
        return torch.float32
    return dtype if backward else torch.float64


def _float64_sums(dtype: torch.dtype, backward: bool) -> torch.dtype:
    return torch.float64


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
        """Pickled by name where :func:`resolve` rebuilds it (its callables and rules need not
        pickle: a spawned child process gets the same record); field by field otherwise."""
        if resolvable(self.name):
            return resolve, (self.name,)
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    @property
    def timed_call(self) -> Callable:
        return self.native or self.roi_align

    def arithmetic(self, dtype: torch.dtype, backward: bool = False) -> Arithmetic:
        """Where it rounds on ``dtype`` input: coordinates, sums, output (``properties.tolerances``)."""
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


def _cuda_reason() -> Optional[str]:
    if torchvision_ops.cuda_available():
        return None
    return "no CUDA device visible (torch.cuda.is_available() is False)"


def _torchvision_pooler(output_size, sampling_ratio, scales):
    return TorchvisionPooler(output_size, sampling_ratio, scales=scales)


def builtin() -> List[Implementation]:
    """The suite's own entries: ours, the reference, torchvision CPU, its pure-PyTorch kernel and CUDA,
    ONNX Runtime, OpenVINO, ncnn, OpenCV dnn."""
    return [
        Implementation(
            "numba", impl.roi_align, ours=True, verified_by_default=True, dtypes=HALF_DTYPES + FLOAT_DTYPES,
            coordinates=torch.float64, sums=_our_sums, operator=torch.ops.roialign_suite.roi_align.default,
        ),
        Implementation(
            "reference", reference.roi_align, not_timed="the float64 reference is a definition, too slow to time",
            dtypes=HALF_DTYPES + FLOAT_DTYPES, coordinates=torch.float64, sums=_float64_sums,
        ),
        Implementation(
            "torchvision-cpu", torchvision_ops.roi_align_cpu, native=torchvision_ops.roi_align_native,
            verified_by_default=True, dtypes=(torch.float16,) + FLOAT_DTYPES,
            divergences=(NEGATIVE_GRID_REFUSED, TORCHVISION_EMPTY_MAP_SEGFAULT), pooler=_torchvision_pooler,
            operator=torch.ops.torchvision.roi_align.default,
        ),
        # Run explicitly (--roialign-implementation=torchvision-python), never by default: it
        # diverges by design, and compiling it costs ~100 s (docs/operator_contract.md).
        Implementation(
            "torchvision-python", torchvision_ops.roi_align_python, dtypes=HALF_DTYPES + FLOAT_DTYPES,
            not_timed="in eager mode it materialises every tap as [K, C, h, w, grid_h, grid_w] tensors (every map "
                      "row and column under adaptive sampling); torchvision runs it compiled",
            divergences=(TORCHVISION_PYTHON_OUTSIDE_SAMPLES_COUNT, TORCHVISION_PYTHON_GRID_CAPPED,
                         TORCHVISION_PYTHON_EMPTY_GRID_NAN_GRADIENT, TORCHVISION_PYTHON_EMPTY_MAP_REFUSED),
        ),
        Implementation(
            "torchvision-cuda", torchvision_ops.roi_align_cuda, native=torchvision_ops.roi_align_native,
            device="cuda", verified_by_default=True, unavailable=_cuda_reason(),
            dtypes=HALF_DTYPES + FLOAT_DTYPES, divergences=(NEGATIVE_GRID_REFUSED,), pooler=_torchvision_pooler,
        ),
        Implementation(
            "onnxruntime", runtimes.roi_align_onnxruntime, unavailable=runtimes.onnxruntime_unavailable(),
            differentiable=False,
            divergences=(NEGATIVE_GRID_REFUSED, ONNX_SCALE_IN_FLOAT32, RUNTIME_EMPTY_MAP_UNINITIALISED),
        ),
        Implementation(
            "openvino", runtimes.roi_align_openvino, unavailable=runtimes.openvino_unavailable(),
            differentiable=False, compute_dtype=torch.float32,
            divergences=(NEGATIVE_GRID_REFUSED, ONNX_SCALE_IN_FLOAT32, OPENVINO_FLOAT64_IN_FLOAT32,
                         OPENVINO_EMPTY_GRID_NAN, RUNTIME_EMPTY_MAP_UNINITIALISED),
        ),
        ncnn.record(),
        opencv_dnn.record(),
    ]


def load_object(spec: str):
    """``"package.module:attr"`` -> the object it names (a clear error otherwise)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR, got {spec!r}")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


# torchvision's roi_align operator schema, as (type, name) of each argument.
ROI_ALIGN_SCHEMA = (("Tensor", "input"), ("Tensor", "rois"), ("float", "spatial_scale"), ("SymInt", "pooled_height"),
                    ("SymInt", "pooled_width"), ("int", "sampling_ratio"), ("bool", "aligned"))


def as_operator(obj) -> Optional[torch._ops.OpOverload]:
    """The ``torch.library`` operator ``obj`` is, or wraps: an ``OpOverload``
    (``torch.ops.ns.name.default``), an ``OpOverloadPacket`` (``torch.ops.ns.name``: its
    ``default``), or a callable whose ``__wrapped__`` chain (``functools.wraps``) ends at
    one of those; None otherwise."""
    obj = inspect.unwrap(obj, stop=lambda f: isinstance(f, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)))
    if isinstance(obj, torch._ops.OpOverloadPacket):
        return obj.default
    return obj if isinstance(obj, torch._ops.OpOverload) else None


def operator_roi_align(operator: torch._ops.OpOverload) -> Callable:
    """``operator`` (torchvision's roi_align schema, checked: :data:`ROI_ALIGN_SCHEMA`, ``int``
    accepted for ``SymInt``) called with ``torchvision.ops.roi_align``'s signature."""
    arguments = tuple((str(a.type), a.name) for a in operator._schema.arguments)
    expected = tuple((("int" if t == "SymInt" else t), n) for t, n in ROI_ALIGN_SCHEMA)
    if tuple((("int" if t == "SymInt" else t), n) for t, n in arguments) != expected:
        raise ValueError(f"operator {operator} has schema {operator._schema}; a target operator needs "
                         f"torchvision's roi_align schema ({', '.join(f'{t} {n}' for t, n in ROI_ALIGN_SCHEMA)})")

    def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        rois, pooled_height, pooled_width = torchvision_ops.operator_arguments(boxes, output_size)
        return operator(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)

    roi_align.__name__ = f"{operator}_roi_align"
    roi_align.__doc__ = f"{operator} with torchvision.ops.roi_align's signature."
    return roi_align


def target(spec: str, device: str = "cpu") -> Implementation:
    """A user's ``roi_align`` named by ``MODULE:ATTR``, run on ``device``.

    On a non-CPU device the target receives tensors on that device and its
    result is brought back to the CPU (``native`` is the target itself, for
    timing on device-resident inputs). It is third-party: no promises beyond
    torchvision's contract, and the refusal of negative sample grids accepted.

    A ``torch.library`` operator with torchvision's roi_align schema may be the
    target itself (``torch:ops.torchvision.roi_align``, an ``OpOverloadPacket``,
    or ``....default``): it is called through :func:`operator_roi_align` and
    recorded as the record's ``operator`` (for ``opcheck``), as is the operator
    a callable wraps with ``functools.wraps`` (:func:`as_operator`).
    """
    fn = load_object(spec)
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    operator = as_operator(fn)
    if isinstance(fn, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        fn = operator_roi_align(operator)
    common = dict(divergences=(NEGATIVE_GRID_REFUSED,), operator=operator)
    if device == "cpu":
        return Implementation(f"target:{spec}", fn, **common)
    return Implementation(
        f"target:{spec}@{device}", torchvision_ops.run_on(fn, device), native=fn, device=device,
        unavailable=_cuda_reason() if device.startswith("cuda") else None, **common,
    )


def by_name() -> Dict[str, Implementation]:
    return {i.name: i for i in builtin()}


TARGET_PREFIX = "target:"


def resolvable(name: str) -> bool:
    """Whether :func:`resolve` rebuilds the implementation called ``name``."""
    return name.startswith(TARGET_PREFIX) or name in by_name()


def resolve(name: str) -> Implementation:
    """The implementation called ``name``: a built-in, or a target as :func:`target` names it
    (``target:MODULE:ATTR``, ``target:MODULE:ATTR@DEVICE``)."""
    if name.startswith(TARGET_PREFIX):
        spec, _, device = name[len(TARGET_PREFIX):].partition("@")
        return target(spec, device or "cpu")
    known = by_name()
    if name not in known:
        raise LookupError(f"no implementation called {name!r}: built-ins are {sorted(known)}, "
                          f"targets are named {TARGET_PREFIX}MODULE:ATTR[@DEVICE]")
    return known[name]
