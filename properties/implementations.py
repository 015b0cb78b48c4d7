"""Named RoIAlign implementations that the properties and benchmarks iterate over.

Every entry has ``torchvision.ops.roi_align``'s signature and takes and
returns CPU tensors. Entries that cannot run here stay listed with the reason,
so a test can skip with that reason instead of silently leaving them out.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from roialign_suite import impl
from roialign_suite import reference
from roialign_suite.reference import runtimes, torchvision_ops


@dataclass(frozen=True)
class Implementation:
    name: str
    roi_align: Callable
    device: str = "cpu"
    # Our own kernels promise more than torchvision's contract: a clear error
    # on every bad input and a bitwise-deterministic backward.
    ours: bool = False
    # Why it cannot run on this machine, or None when it can.
    unavailable: Optional[str] = None
    # False for forward-only entries (the ONNX runtimes): gradient properties skip them.
    differentiable: bool = True
    # The precision it computes in whatever the input dtype, where that is
    # lower than the input's (OpenVINO runs float64 models in float32).
    compute_dtype: Optional[torch.dtype] = None

    def __repr__(self) -> str:  # short ids in pytest parametrisation
        return self.name


def _cuda_reason() -> Optional[str]:
    if torchvision_ops.cuda_available():
        return None
    return "no CUDA device visible (torch.cuda.is_available() is False)"


def builtin() -> List[Implementation]:
    """The suite's own entries: ours, the reference, torchvision CPU and CUDA, ONNX Runtime, OpenVINO."""
    return [
        Implementation("numba", impl.roi_align, ours=True),
        Implementation("reference", reference.roi_align),
        Implementation("torchvision-cpu", torchvision_ops.roi_align_cpu),
        Implementation("torchvision-cuda", torchvision_ops.roi_align_cuda, device="cuda", unavailable=_cuda_reason()),
        Implementation(
            "onnxruntime",
            runtimes.roi_align_onnxruntime,
            unavailable=runtimes.onnxruntime_unavailable(),
            differentiable=False,
        ),
        Implementation(
            "openvino",
            runtimes.roi_align_openvino,
            unavailable=runtimes.openvino_unavailable(),
            differentiable=False,
            compute_dtype=torch.float32,
        ),
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


def target(spec: str, device: str = "cpu") -> Implementation:
    """A user's ``roi_align`` named by ``MODULE:ATTR``, run on ``device``.

    On a non-CPU device the target receives tensors on that device and its
    result is brought back to the CPU.
    """
    fn = load_object(spec)
    if not callable(fn):
        raise ValueError(f"{spec!r} is not callable")
    unavailable = _cuda_reason() if device.startswith("cuda") else None
    if device == "cpu":
        return Implementation(f"target:{spec}", fn)
    return Implementation(
        f"target:{spec}@{device}", torchvision_ops.run_on(fn, device), device=device, unavailable=unavailable
    )


def by_name() -> Dict[str, Implementation]:
    return {i.name: i for i in builtin()}
