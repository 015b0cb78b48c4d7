"""Calling a RoIAlign with ``torchvision.ops.roi_align``'s signature: on a device, or as an operator.

- :func:`run_on`: a ``roi_align`` run on a device, CPU tensors in and out (gradients flow back through the copies).
- :func:`cuda_unavailable`: why a CUDA entry cannot run here, or None.
- :func:`operator_arguments`: the ``(rois [K, 5], pooled_height, pooled_width)`` an operator with
  torchvision's roi_align schema takes, made from ``boxes`` and ``output_size`` as torchvision makes them.
- :class:`PerConfiguration`: the compiled model (session, net, function) of each configuration a
  runtime adapter builds, the most recently used kept.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Generic, Hashable, Optional, TypeVar

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair
from torchvision.ops._utils import check_roi_boxes_shape, convert_boxes_to_roi_format

from roialign_suite.reference.inputs import BoxesArg


def cuda_unavailable() -> Optional[str]:
    """Why a CUDA entry cannot run here, or None."""
    if torch.cuda.is_available():
        return None
    return "no CUDA device visible (torch.cuda.is_available() is False)"


def run_on(roi_align, device: str):
    """``roi_align`` (torchvision's signature) run on ``device``, taking and returning CPU tensors."""

    def on_device(input: Tensor, boxes: BoxesArg, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        moved_boxes = boxes.to(device) if isinstance(boxes, Tensor) else [b.to(device) for b in boxes]
        out = roi_align(input.to(device), moved_boxes, output_size, spatial_scale, sampling_ratio, aligned)
        return out.to(input.device)

    return on_device


def operator_arguments(boxes: BoxesArg, output_size):
    """``(rois [K, 5], pooled_height, pooled_width)`` as ``torchvision.ops.roi_align`` makes
    them from its ``boxes`` and ``output_size`` before calling its operator."""
    check_roi_boxes_shape(boxes)
    rois = boxes if isinstance(boxes, Tensor) else convert_boxes_to_roi_format(boxes)
    pooled_height, pooled_width = _pair(output_size)
    return rois, pooled_height, pooled_width


Compiled = TypeVar("Compiled")


class PerConfiguration(Generic[Compiled]):
    """``build(key)`` once per configuration key, the ``capacity`` most recently used kept (thread-safe).

    The properties draw a new spatial scale or output size for nearly every example, so an
    unbounded cache of compiled models grows for the whole run: ONNX Runtime's sessions each hold a
    thread pool, and a worker process under the isolation's memory limit ran out of memory for
    thread stacks after a few hundred of them.
    """

    CAPACITY = 32

    def __init__(self, build: Callable[[Hashable], Compiled], capacity: int = CAPACITY):
        self._build = build
        self.capacity = capacity
        self._built: "collections.OrderedDict[Hashable, Compiled]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable) -> Compiled:
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
            compiled = self._built[key] = self._build(key)
            while len(self._built) > self.capacity:
                self._built.popitem(last=False)
            return compiled

    def __len__(self) -> int:
        return len(self._built)
