"""Intel Extension for PyTorch's CPU RoIAlign behind ``torchvision.ops.roi_align``'s signature.

IPEX 2.8 needs torch 2.8 (``tox -e ipex-check``: torch 2.8.0, torchvision
0.23.0, intel-extension-for-pytorch 2.8.0). ``import
intel_extension_for_pytorch`` registers IPEX's kernel for the operator
``torchvision::roi_align`` under the ``AutogradCPU`` dispatch key
(``csrc/cpu/aten/ROIAlign.cpp``), so ``torchvision.ops.roi_align`` on CPU
tensors runs ``torch_ipex::ROIAlign_forward`` and, for the gradient, IPEX's
own ``torch_ipex::ROIAlign_backward``. :func:`ipex_dispatched` checks that
with the profiler. Under ``torch.inference_mode()`` the Autograd key is
skipped and torchvision's own CPU kernel runs instead: :func:`roi_align`
never runs inside it.

What :func:`roi_align` converts, and nothing else:

- **boxes**: passed to ``torchvision.ops.roi_align`` as given (a
  ``Tensor[K, 5]`` or a list of per-image ``Tensor[L, 4]``: torchvision
  builds the ``[K, 5]`` rois). IPEX reads the rois as its accumulation type
  (``rois_.data_ptr<accscalar_t>()``: float32 for bfloat16 input, the input's
  dtype otherwise), so for bfloat16 input the boxes are cast to float32, as
  IPEX's own autocast rule does; other dtypes pass unchanged.
- **layout, dtype, aligned, sampling_ratio, spatial_scale**: unchanged (IPEX
  makes the input contiguous in its suggested memory format itself; the
  output is in that format, a CPU tensor of the input's dtype).
- **calls**: all K RoIs in one call, as torchvision.
"""
from __future__ import annotations

from importlib import metadata
from typing import Optional

import torch
from torch import Tensor

from roialign_suite.implementations.records import NEGATIVE_GRID_REFUSED, Divergence, Implementation, on_empty_map

NAME = "ipex"
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The profiler event IPEX's forward records (RECORD_FUNCTION in ROIAlign.cpp).
IPEX_FORWARD_EVENT = "torch_ipex::ROIAlign_forward"


def unavailable() -> Optional[str]:
    """Why IPEX's RoIAlign cannot run here, or None (reads package metadata; imports nothing)."""
    hint = "pip install 'roialign-suite[ipex]' in an environment of its own on torch 2.8; tox -e ipex-check"
    try:
        version = metadata.version("intel-extension-for-pytorch")
    except metadata.PackageNotFoundError:
        return f"intel-extension-for-pytorch not installed ({hint})"
    # IPEX refuses to import unless torch's major.minor equals its own.
    if version.split(".")[:2] != torch.__version__.split(".")[:2]:
        return f"intel-extension-for-pytorch {version} needs torch {'.'.join(version.split('.')[:2])}, " \
               f"torch {torch.__version__} is installed ({hint})"
    return None


def _torchvision_roi_align():
    import intel_extension_for_pytorch  # noqa: F401  (registers its kernel for torchvision::roi_align)
    import torchvision

    return torchvision.ops.roi_align


def roi_align(input: Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """IPEX's RoIAlign through ``torchvision.ops.roi_align`` (same signature and contract:
    ``input`` CPU ``[N, C, H, W]``, boxes ``Tensor[K, 5]`` or a list of per-image ``Tensor[L, 4]``
    in image pixels -> ``[K, C, h, w]`` in the input's dtype); differentiable through IPEX's
    backward. Conversions: module docstring."""
    align = _torchvision_roi_align()
    if torch.is_inference_mode_enabled():
        raise RuntimeError("IPEX's RoIAlign is registered under AutogradCPU: inside torch.inference_mode() "
                           "torchvision's own kernel would run instead")
    if input.dtype == torch.bfloat16:
        boxes = boxes.float() if isinstance(boxes, Tensor) else [b.float() for b in boxes]
    return align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)


def ipex_dispatched(input: Tensor, boxes, output_size, **kwargs) -> bool:
    """Whether :func:`roi_align` on these arguments ran IPEX's kernel (its profiler event)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        roi_align(input, boxes, output_size, **kwargs)
    return any(event.name == IPEX_FORWARD_EVENT for event in profile.events())


def _ipex_sums(dtype: torch.dtype, backward: bool) -> torch.dtype:
    """Where IPEX sums: bfloat16's forward in float32 (AccType), every backward and the other
    forwards in the input's dtype."""
    return torch.float32 if dtype == torch.bfloat16 and not backward else dtype


# roi_align_forward_kernel_impl returns early only for an empty output; with H = 0 or W = 0
# pre_calc_for_bilinear_interpolate clamps a sample to row H - 1 = -1 and the sum reads it.
IPEX_EMPTY_MAP_SEGFAULT = Divergence(
    "empty-map-segfault",
    "a box on a map with H = 0 or W = 0: the definition gives zeros (no pixel to sample); IPEX's CPU kernel "
    "(the caffe2 code torchvision's is, csrc/cpu/aten/kernels/RoiAlignKrnl.cpp) clamps the sample to row "
    "H - 1 = -1 and reads outside the map: the process dies with SIGSEGV",
    "known_divergences/ipex_empty_map_segfault.json",
    boxes=on_empty_map,
    excluded=True,
)


def record() -> Implementation:
    """IPEX's registry entry: see the module docstring for the conversions, the divergences for its bugs."""
    return Implementation(
        NAME, roi_align, unavailable=unavailable(), dtypes=DTYPES,
        # RoiAlignKrnl.cpp: coordinates, weights and sums in AccType<T> (float32 for bfloat16,
        # the input's dtype otherwise, float16 included); the backward adds into the gradient in T.
        # `coordinates` is left at the input's dtype: for bfloat16 that bounds float32 coordinates
        # loosely (the record holds one coordinate dtype for all inputs).
        sums=_ipex_sums,
        # NEGATIVE_GRID_REFUSED is pinned for IPEX by known_divergences/ipex_negative_sample_grid_refused.json.
        divergences=(NEGATIVE_GRID_REFUSED, IPEX_EMPTY_MAP_SEGFAULT),
        packages=("intel-extension-for-pytorch",), preload=("intel_extension_for_pytorch",), xfails="ipex.txt",
    )
