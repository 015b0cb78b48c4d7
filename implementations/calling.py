"""Calling a RoIAlign with ``torchvision.ops.roi_align``'s signature: on a device, or as an operator.

- :func:`run_on`: a ``roi_align`` run on a device, CPU tensors in and out (gradients flow back through the copies).
- :func:`cuda_unavailable`: why a CUDA entry cannot run here, or None.
- :func:`operator_arguments`: the ``(rois [K, 5], pooled_height, pooled_width)`` an operator with
  torchvision's roi_align schema takes, made from ``boxes`` and ``output_size`` as torchvision makes them.
"""
from __future__ import annotations

from typing import Optional

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
