"""MXNet 1.9's CPU RoIAlign (``mx.nd.contrib.ROIAlign``) behind ``torchvision.ops.roi_align``'s signature.

MXNet 1.9.1 is retired and imports only with ``numpy < 1.24`` (it uses
``np.bool``), so it lives in its own environment (``tox -e mxnet``: numpy
1.23.5, mxnet 1.9.1, the suite's torch). What :func:`roi_align` converts, and
nothing else (the kernel's arithmetic is never touched):

- **boxes**: a ``Tensor[K, 5]`` (batch_index, x1, y1, x2, y2, image pixels)
  is MXNet's own ``rois`` format and passes as it is; a list of per-image
  ``Tensor[L, 4]`` becomes ``[K, 5]`` with the image's index prepended, as
  torchvision does (``implementations.calling.operator_arguments``).
- **dtype**: MXNet requires ``rois`` in the data's dtype (its type inference
  checks), so the boxes are cast to the input's dtype. float16, float32 and
  float64 run in that dtype; bfloat16 is refused with a ``TypeError`` (numpy,
  MXNet's array bridge, has no bfloat16).
- **layout**: NDArrays are dense row-major: the input (any strides) is
  copied through numpy into a new NDArray; the output ``[K, C, h, w]`` comes
  back as a new contiguous CPU tensor of the input's dtype.
- **aligned**: passed as MXNet's ``aligned``; the kernel subtracts the half
  pixel itself. ``sampling_ratio`` passes as ``sample_ratio`` (``<= 0``
  adaptive in both); ``output_size`` (int or ``(h, w)``) as ``pooled_size``;
  ``spatial_scale`` as it is (MXNet stores it as a float32 parameter: see the
  record's divergences).
- **calls**: all K RoIs in one call; an empty output (K = 0 or C = 0) is
  returned as ``[K, C, h, w]`` zeros, with a zero gradient, without calling
  MXNet (its legacy shape inference reads a 0 extent as "unknown" and
  raises). H = 0 or W = 0 (a non-empty output) goes to the kernel.
- **backward**: :class:`_MXNetRoIAlign` records the forward under
  ``mx.autograd`` and its backward runs MXNet's own ``_backward_ROIAlign``
  on the upstream gradient; the input gradient comes back in the input's
  dtype, the boxes get none.

- **crashes**: MXNet's wheel is built with its SIGSEGV logger, which turns a
  segfault into ``exit(-1)`` racing its engine threads' destructors (exit
  status 255 or SIGABRT, run to run); on first use the adapter restores the
  default SIGSEGV action, so a segfault in the kernel is a plain SIGSEGV.

Importing this module does not import MXNet (the suite imports every adapter
at start-up): :func:`unavailable` reads installed package metadata only.
"""
from __future__ import annotations

import faulthandler
import signal
from importlib import metadata
from typing import Optional

import torch
from torch import Tensor

import numpy as np

from roialign_suite.implementations.records import (
    Divergence, Implementation, on_empty_map, spatial_scale_not_float32,
)
from roialign_suite.implementations.calling import operator_arguments

NAME = "mxnet"
DTYPES = (torch.float16, torch.float32, torch.float64)
# mxnet 1.9.1 uses np.bool, removed in numpy 1.24.
_NUMPY_BELOW = (1, 24)


def unavailable() -> Optional[str]:
    """Why MXNet's RoIAlign cannot run here, or None (without importing MXNet)."""
    hint = "pip install 'roialign-suite[mxnet]' in an environment of its own; tox -e mxnet"
    try:
        version = metadata.version("mxnet")
    except metadata.PackageNotFoundError:
        return f"mxnet not installed ({hint})"
    numpy_version = tuple(int(p) for p in metadata.version("numpy").split(".")[:2])
    if numpy_version >= _NUMPY_BELOW:
        return (f"mxnet {version} needs numpy < 1.24 (it uses np.bool), numpy "
                f"{metadata.version('numpy')} is installed ({hint})")
    return None


def _mx():
    """MXNet, imported on first use, with the default SIGSEGV action restored (module docstring)."""
    global _MXNET
    if _MXNET is None:
        import mxnet

        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        if faulthandler.is_enabled():  # chain Python's traceback dump onto the default action again
            faulthandler.disable()
            faulthandler.enable()
        _MXNET = mxnet
    return _MXNET


_MXNET = None


def _to_nd(mx, tensor: Tensor):
    return mx.nd.array(tensor.detach().contiguous().numpy(), dtype=tensor.numpy().dtype, ctx=mx.cpu())


class _MXNetRoIAlign(torch.autograd.Function):
    """MXNet's forward, and its own backward (``_backward_ROIAlign``) as the gradient."""

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, pooled_height: int, pooled_width: int, spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.dtype, ctx.input_shape, ctx.mx_graph = input.dtype, input.shape, None
        shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
        if 0 in shape:
            # Nothing to pool; MXNet's (legacy) shape inference reads a 0 extent as "unknown" and raises.
            return input.new_zeros(shape)
        mx = _mx()
        data, mx_rois = _to_nd(mx, input), _to_nd(mx, rois)
        params = dict(pooled_size=(pooled_height, pooled_width), spatial_scale=spatial_scale,
                      sample_ratio=sampling_ratio, aligned=aligned)
        if ctx.needs_input_grad[0]:
            data.attach_grad()
            with mx.autograd.record():
                out = mx.nd.contrib.ROIAlign(data, mx_rois, **params)
            ctx.mx_graph = (data, out)
        else:
            out = mx.nd.contrib.ROIAlign(data, mx_rois, **params)
        return torch.from_numpy(out.asnumpy()).to(input.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        if ctx.mx_graph is None:  # an empty output: no sample, a zero gradient
            return torch.zeros(ctx.input_shape, dtype=ctx.dtype), None, None, None, None, None, None
        mx = _mx()
        data, out = ctx.mx_graph
        out.backward(_to_nd(mx, grad_output.to(ctx.dtype)), retain_graph=True)
        grad = torch.from_numpy(data.grad.asnumpy().copy())
        return grad, None, None, None, None, None, None


def roi_align(input: Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """``mx.nd.contrib.ROIAlign`` with ``torchvision.ops.roi_align``'s signature and contract:
    ``input`` CPU ``[N, C, H, W]`` (any strides), ``boxes`` ``Tensor[K, 5]`` or a list of
    per-image ``Tensor[L, 4]`` in image pixels -> ``[K, C, h, w]`` in the input's dtype
    (conversions: module docstring). Differentiable in ``input`` through MXNet's backward."""
    if input.dtype not in DTYPES:
        raise TypeError(f"MXNet's ROIAlign takes {', '.join(str(d) for d in DTYPES)} input, got {input.dtype}")
    if input.dim() != 4:
        raise ValueError(f"input must be [N, C, H, W], got shape {tuple(input.shape)}")
    rois, pooled_height, pooled_width = operator_arguments(boxes, output_size)
    return _MXNetRoIAlign.apply(input, rois.to(input.dtype), int(pooled_height), int(pooled_width), float(spatial_scale),
                                int(sampling_ratio), bool(aligned))


# Unit roundoff of each dtype the kernel computes box extents in.
_UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "float32": 2.0 ** -24, "float64": 2.0 ** -53}


def _aligned_extent_not_positive(case, geometry) -> bool:
    """aligned=True and the box's scaled width or height is <= 0, or within the rounding of
    ``x * scale - 0.5`` in the case's dtype of it (4 roundings of the ends' size; the float32
    scale keeps x1 * s <= x2 * s, so only rounding can reach 0)."""
    if not case.aligned:
        return False
    u = _UNIT_ROUNDOFF.get(case.dtype, _UNIT_ROUNDOFF["float16"])
    for start, extent in ((geometry.start_w, geometry.roi_w), (geometry.start_h, geometry.roi_h)):
        if extent <= 4 * u * (abs(start) + abs(start + extent) + 1):
            return True
    return False


# ROIAlignForward: `if (continuous_coordinate) { CHECK_GT(roi_width, 0.); CHECK_GT(roi_height, 0.); }`
# inside `#pragma omp parallel for`: the dmlc::Error cannot leave the OpenMP region, so
# std::terminate aborts the process.
MXNET_ALIGNED_EMPTY_BOX_ABORT = Divergence(
    "aligned-empty-box-abort",
    "aligned=True and a box of zero (or negative: inverted) scaled width or height: the definition (and "
    "torchvision) gives 0 for an empty sample grid, or averages the samples of an inverted box; MXNet's "
    "forward checks roi_width > 0 with CHECK_GT inside an OpenMP parallel loop, the dmlc::Error cannot leave "
    "it and std::terminate kills the process with SIGABRT",
    "known_divergences/mxnet_aligned_empty_box_abort.json",
    boxes=_aligned_extent_not_positive,
    excluded=True,
)
MXNET_EMPTY_MAP_SEGFAULT = Divergence(
    "empty-map-segfault",
    "a box on a map with H = 0 or W = 0: the definition gives zeros (no pixel to sample); MXNet's forward "
    "clamps the sample to row H - 1 = -1 (column W - 1) and reads outside the (empty) map: SIGSEGV",
    "known_divergences/mxnet_empty_map_segfault.json",
    boxes=on_empty_map,
    excluded=True,
)
MXNET_SPATIAL_SCALE_ABOVE_ONE_REFUSED = Divergence(
    "spatial-scale-above-one-refused",
    "spatial_scale > 1 (a feature map finer than the image): the definition and torchvision take any positive "
    "scale; MXNet's ROIAlignParam declares spatial_scale with set_range(0.0, 1.0) and raises MXNetError "
    "('value 2 for Parameter spatial_scale exceed bound [0,1]'): an accepted refusal",
    "known_divergences/mxnet_spatial_scale_above_one_refused.json",
    boxes=lambda case, geometry: float(np.float32(case.spatial_scale)) > 1.0,
    excluded=True,
)
MXNET_SCALE_IN_FLOAT32 = Divergence(
    "spatial-scale-float32",
    "ROIAlignParam stores spatial_scale as a float (float32): on float64 input a scale float32 cannot hold "
    "exactly (not a power of two) moves every sample by ~1e-8 of its coordinate (and can flip an adaptive grid "
    "or a sample across the map's edge); the definition and torchvision use the float64 scale",
    "known_divergences/mxnet_float64_spatial_scale_*.json",
    cases=lambda case: case.dtype == "float64" and spatial_scale_not_float32(case),
)


def record() -> Implementation:
    """MXNet's registry entry: see the module docstring for the conversions, the divergences for its bugs."""
    return Implementation(
        NAME, roi_align, unavailable=unavailable(), dtypes=DTYPES,
        # ROIAlignForward<T>/ROIAlignBackward<T> (src/operator/contrib/roi_align.cc): coordinates,
        # weights and the bin sums all in the data's dtype T (float16 as mshadow's half_t).
        divergences=(MXNET_ALIGNED_EMPTY_BOX_ABORT, MXNET_EMPTY_MAP_SEGFAULT, MXNET_SPATIAL_SCALE_ABOVE_ONE_REFUSED,
                     MXNET_SCALE_IN_FLOAT32),
        packages=("mxnet",), preload=("mxnet",), xfails="mxnet.txt",
    )
