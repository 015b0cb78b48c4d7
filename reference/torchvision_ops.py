"""torchvision's RoIAlign kernels behind the suite's CPU-tensor interface.

An adapter takes CPU tensors (as every property and benchmark builds them),
runs torchvision's kernel on its device, and returns a CPU tensor, so the
same test can hold it next to ours. Gradients flow back through the copies.
"""
from __future__ import annotations

import inspect
import sys

import torch
import torchvision
from torch import Tensor
from torch.nn.modules.utils import _pair
from torchvision.ops._utils import check_roi_boxes_shape, convert_boxes_to_roi_format

from roialign_suite.reference.inputs import BoxesArg


def cuda_available() -> bool:
    return torch.cuda.is_available()


def run_on(roi_align, device: str):
    """``roi_align`` (torchvision's signature) run on ``device``, taking and returning CPU tensors."""

    def on_device(input: Tensor, boxes: BoxesArg, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        moved_boxes = boxes.to(device) if isinstance(boxes, Tensor) else [b.to(device) for b in boxes]
        out = roi_align(input.to(device), moved_boxes, output_size, spatial_scale, sampling_ratio, aligned)
        return out.to(input.device)

    return on_device


def roi_align_on(device: str):
    """``torchvision.ops.roi_align`` run on ``device``, taking and returning CPU tensors."""
    roi_align = run_on(torchvision.ops.roi_align, device)
    roi_align.__name__ = f"torchvision_roi_align_{device}"
    roi_align.__doc__ = f"torchvision.ops.roi_align on {device}, CPU tensors in and out."
    return roi_align


roi_align_cpu = roi_align_on("cpu")


def roi_align_cuda(*args, **kwargs):
    """torchvision.ops.roi_align on the GPU; raises if there is none."""
    if not cuda_available():
        raise RuntimeError("torchvision CUDA RoIAlign needs a CUDA device; none is visible")
    return _ROI_ALIGN_CUDA(*args, **kwargs)


_ROI_ALIGN_CUDA = roi_align_on("cuda")

# torchvision's own entry point, for tensors already on their device (what is timed).
roi_align_native = torchvision.ops.roi_align


# torchvision's pure-PyTorch RoIAlign (``torchvision/ops/roi_align.py``), what
# ``torchvision.ops.roi_align`` runs under deterministic mode on GPUs and when
# its C++ ops are missing. The module attribute is wrapped by ``lazy_compile``
# (``torch.compile`` on first call, which then replaces the attribute); its
# ``__wrapped__`` chain ends at the plain function, run here in eager mode.
_PYTHON_ROI_ALIGN = inspect.unwrap(sys.modules["torchvision.ops.roi_align"]._roi_align)


def operator_arguments(boxes: BoxesArg, output_size):
    """``(rois [K, 5], pooled_height, pooled_width)`` as ``torchvision.ops.roi_align`` makes
    them from its ``boxes`` and ``output_size`` before calling its operator."""
    check_roi_boxes_shape(boxes)
    rois = boxes if isinstance(boxes, Tensor) else convert_boxes_to_roi_format(boxes)
    pooled_height, pooled_width = _pair(output_size)
    return rois, pooled_height, pooled_width


def roi_align_python(input: Tensor, boxes: BoxesArg, output_size, spatial_scale=1.0, sampling_ratio=-1,
                     aligned=False) -> Tensor:
    """torchvision's pure-PyTorch ``_roi_align`` in eager mode, behind ``torchvision.ops.roi_align``'s
    signature; tensors stay on their device."""
    rois, pooled_height, pooled_width = operator_arguments(boxes, output_size)
    return _PYTHON_ROI_ALIGN(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
