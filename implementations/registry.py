"""Which implementations the suite knows: the built-ins, and a user's target named ``MODULE:ATTR``.

The built-ins are the records of the adapter modules listed in
:data:`BUILTIN_MODULES`, in that order: each module of ``implementations/``
has ``record()`` returning one :class:`~.records.Implementation` or
``records()`` returning several. Adding a kernel is one adapter module and
its name in that tuple. A user's ``roi_align`` becomes a record through
:func:`target`; :func:`resolve` rebuilds any record from its name (how a
record crosses into a child process).
"""
from __future__ import annotations

import importlib
import inspect
from typing import Callable, Dict, List, Optional, Tuple

import torch

from roialign_suite.implementations.naming import TARGET_PREFIX, is_target, parse_target, target_name
from roialign_suite.implementations.calling import cuda_unavailable, operator_arguments, run_on
from roialign_suite.implementations.records import NEGATIVE_GRID_REFUSED, Implementation

# The adapter modules (``roialign_suite.implementations.<name>``) whose records are the built-ins.
BUILTIN_MODULES = ("numba", "reference", "torchvision", "onnx_runtimes", "paddle", "mnn", "ncnn", "opencv_dnn", "tvm", "mxnet", "ipex")



def module_records(module) -> List[Implementation]:
    """The records an adapter module registers: ``module.records()``, or ``[module.record()]``."""
    if hasattr(module, "records"):
        return list(module.records())
    if hasattr(module, "record"):
        return [module.record()]
    raise TypeError(f"{module.__name__} has neither record() nor records(): it registers no implementation")


def builtin() -> List[Implementation]:
    """The suite's own entries, module by module (:data:`BUILTIN_MODULES`)."""
    return [record for name in BUILTIN_MODULES
            for record in module_records(importlib.import_module(f"{__package__}.{name}"))]


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
        rois, pooled_height, pooled_width = operator_arguments(boxes, output_size)
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
        return Implementation(target_name(spec), fn, **common)
    return Implementation(
        target_name(spec, device), run_on(fn, device), native=fn, device=device,
        unavailable=cuda_unavailable() if device.startswith("cuda") else None, **common,
    )


def by_name() -> Dict[str, Implementation]:
    """The built-ins by name."""
    return {i.name: i for i in builtin()}


def the_one(flag: str) -> Implementation:
    """The one built-in whose boolean field ``flag`` is set (``"ours"``, ``"baseline"``, ``"definition"``)."""
    found = [i for i in builtin() if getattr(i, flag)]
    if len(found) != 1:
        raise LookupError(f"expected one built-in with {flag}=True, found {[i.name for i in found]}")
    return found[0]


def names_where(flag: str) -> Tuple[str, ...]:
    """The names of the built-ins whose field ``flag`` is set (true, or not None), in registry order."""
    return tuple(i.name for i in builtin() if getattr(i, flag) not in (None, False))


def resolvable(name: str) -> bool:
    """Whether :func:`resolve` rebuilds the implementation called ``name``."""
    return is_target(name) or name in by_name()


def resolve(name: str) -> Implementation:
    """The implementation called ``name``: a built-in, or a target as :func:`target` names it
    (``target:MODULE:ATTR``, ``target:MODULE:ATTR@DEVICE``)."""
    if is_target(name):
        return target(*parse_target(name))
    known = by_name()
    if name not in known:
        raise LookupError(f"no implementation called {name!r}: built-ins are {sorted(known)}, "
                          f"targets are named {TARGET_PREFIX}MODULE:ATTR[@DEVICE]")
    return known[name]
