"""MNN's CPU RoIAlign (``MNN.expr.roi_align``, package ``mnn``) behind ``torchvision.ops.roi_align``'s signature.

What the adapter converts, and nothing more (the kernel's arithmetic is its own):

- arguments: checked first by the suite's own front end (``reference.inputs``:
  shapes, batch indices in ``[0, N)``, finite boxes, ``output_size``,
  ``spatial_scale``, ``sampling_ratio``) and ``check_geometry`` (a row whose
  adaptive grid needs more than ``MAX_GRID`` samples per axis is refused, as
  for the ONNX runtimes), so bad input raises a clear ``TypeError`` /
  ``ValueError`` instead of reaching MNN (MNN itself returns uninitialised
  memory for a batch index outside ``[0, N)``).
- dtype: float32 only. MNN's CPU RoIAlign reads every buffer as ``float``
  (``CPUROIAlign.cpp``); a float64 ``MNN.expr.const`` is not converted but
  read as float32 garbage, and on x86 there is no float16 path. Other dtypes
  raise ``TypeError`` naming the dtype.
- boxes: torchvision's ``Tensor[K, 5]`` rows (batch_index, x1, y1, x2, y2 in
  image pixels), or the per-image list of ``Tensor[L, 4]`` (image i's rows get
  batch index i, in order), become one float32 ``[K, 5]`` MNN constant: MNN's
  two-input form reads the same row layout (batch index as a float, truncated
  to int). All K RoIs go in one call.
- layout: the input (any strides) is made contiguous NCHW, wrapped with
  ``MNN.expr.const(..., NCHW)`` and converted to MNN's ``NC4HW4`` (channels
  packed by 4, the layout its RoIAlign requires); the output ``[K, C, h, w]``
  is converted back to NCHW and copied into a new torch tensor.
- pixel convention: ``aligned`` is passed through; MNN itself shifts the scaled
  box by -0.5 when aligned (half-pixel) and clamps the legacy RoI to >= 1 pixel,
  as torchvision. ``sampling_ratio <= 0`` is passed through (MNN's adaptive
  grid is ``ceil(roi_size / pooled)``, computed in float32).
- pooling mode: ``AVEPOOL`` (torchvision's average).
- backward: :class:`_MNNRoIAlign` calls MNN's own backward, the same op with
  ``output_grad=True`` and the upstream gradient (NC4HW4) as ``backward_diff``;
  it returns ``d input`` ``[N, C, H, W]`` float32. Boxes get no gradient.
- refusals: where MNN's executor fails (``Var.read`` raises; seen for H = 0 or
  W = 0) the adapter raises ``RuntimeError`` saying MNN refused the call; it does
  not compute the zero result itself. K = 0 (no RoI: MNN's executor fails the
  same way, ``docs/findings/mnn_no_boxes_refused.py``) is the one exception: the
  empty ``[0, C, h, w]`` output (zero gradient) is returned without calling MNN,
  as the MXNet adapter does, so that the properties' cases without boxes check
  the other kernels' calls instead of failing on this refusal each time;
  ``tests/test_mnn_adapter.py`` checks that MNN itself still refuses it.

MNN computes sample coordinates in float32 (``roi * spatial_scale + offset``,
``spatial_scale`` held as a float32 attribute) and sums the four bilinear taps
of every sample and the samples of a bin in float32 (``MNNRoiAlignAvg``:
``Vec4`` fma, then times ``1 / count``); the backward scatters
``grad * (1 / count) * weight`` into the float32 input gradient in place.
"""
from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.roi_align import check_geometry

PACKAGE = "mnn"  # the PyPI name; it installs the import name MNN
DTYPES = (torch.float32,)


def unavailable() -> Optional[str]:
    """Why MNN's RoIAlign cannot run here, or None."""
    if importlib.util.find_spec("MNN") is None:
        return f"{PACKAGE} not installed (pip install 'roialign-suite[mnn]')"
    return None


def _mnn_expr():
    import MNN.expr

    return MNN.expr


def _nc4hw4(array: np.ndarray):
    """A float32 NCHW numpy array as an MNN variable in NC4HW4."""
    F = _mnn_expr()
    return F.convert(F.const(array, list(array.shape), F.NCHW, F.float), F.NC4HW4)


def _read_nchw(var, what: str) -> np.ndarray:
    """An MNN NC4HW4 variable computed and read back as an NCHW float32 numpy array (a copy)."""
    F = _mnn_expr()
    if var is None:  # the expression builder refused its arguments (MNN_ERROR, nullptr)
        raise RuntimeError(f"MNN refused to build roi_align's {what}")
    try:
        return np.array(F.convert(var, F.NCHW).read(), dtype=np.float32, copy=True)
    except (SystemError, TypeError) as error:  # MNN's executor failed: "call to readMap meet a error"
        raise RuntimeError(f"MNN refused to compute roi_align's {what}: {error}") from None


def _call(features: np.ndarray, rois: np.ndarray, pooled: Tuple[int, int], spatial_scale: float,
          sampling_ratio: int, aligned: bool, grad_output: Optional[np.ndarray] = None) -> np.ndarray:
    """One call of ``MNN.expr.roi_align`` on float32 NCHW ``features`` and ``rois [K, 5]``: the
    output ``[K, C, h, w]``, or with ``grad_output [K, C, h, w]`` MNN's input gradient ``[N, C, H, W]``."""
    F = _mnn_expr()
    args = (_nc4hw4(features), F.const(rois, list(rois.shape), F.NCHW, F.float), pooled[0], pooled[1],
            spatial_scale, sampling_ratio, aligned, F.Pooling_Mode.AVEPOOL)
    if grad_output is None:
        return _read_nchw(F.roi_align(*args), "forward")
    return _read_nchw(F.roi_align(*args, True, _nc4hw4(grad_output)), "backward")


class _MNNRoIAlign(torch.autograd.Function):
    """Forward and backward both MNN's; ``features`` float32 NCHW, ``rois`` float32 ``[K, 5]`` numpy."""

    @staticmethod
    def forward(ctx, input: Tensor, features, rois, pooled, spatial_scale, sampling_ratio, aligned):
        ctx.call = (features, rois, pooled, spatial_scale, sampling_ratio, aligned)
        ctx.input_shape = input.shape
        if rois.shape[0] == 0:  # K = 0: nothing to pool (MNN's executor refuses it: module docstring)
            return input.new_zeros((0, input.shape[1]) + tuple(pooled))
        return torch.from_numpy(_call(features, rois, pooled, spatial_scale, sampling_ratio, aligned))

    @staticmethod
    def backward(ctx, grad_output):
        if grad_output.shape[0] == 0:  # K = 0: no sample, a zero gradient
            return (torch.zeros(ctx.input_shape, dtype=torch.float32),) + (None,) * 6
        grad = np.ascontiguousarray(grad_output.detach().to(torch.float32).numpy())
        grad_input = torch.from_numpy(_call(*ctx.call, grad_output=grad))
        return (grad_input,) + (None,) * 6


def roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """MNN's RoIAlign with ``torchvision.ops.roi_align``'s signature and conventions.

    ``input`` float32 CPU ``[N, C, H, W]`` (any strides); ``boxes`` ``Tensor[K, 5]``
    (batch_index, x1, y1, x2, y2 in image pixels) or a list of per-image
    ``Tensor[L, 4]``; returns float32 ``[K, C, h, w]``, differentiable in
    ``input`` through MNN's own backward. Conversions: the module docstring.
    """
    args = inputs.roi_align_args(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, dtypes=DTYPES)
    if input.device.type != "cpu":
        raise ValueError(f"mnn's roi_align takes CPU tensors, got input on {input.device}")
    check_geometry(args.rois, args.output_size, args.spatial_scale, args.sampling_ratio, args.aligned)
    features = np.ascontiguousarray(input.detach().numpy())
    # rois hold the caller's float32 values exactly in float64: back to float32 exactly.
    rois = np.ascontiguousarray(args.rois.to(torch.float32).numpy())
    return _MNNRoIAlign.apply(input, features, rois, args.output_size, args.spatial_scale, args.sampling_ratio,
                              args.aligned)


def _empty_adaptive_grid(case, geometry) -> bool:
    from roialign_suite.implementations.records import adaptive_grid_may_round_empty

    return geometry.grid_h * geometry.grid_w == 0 or adaptive_grid_may_round_empty(case, geometry, torch.float32)


def _inverted_both_axes_adaptive_grid(case, geometry) -> bool:
    return geometry.grid_h < 0 and geometry.grid_w < 0


def _aligned_adaptive(case) -> bool:
    return case.aligned and case.sampling_ratio <= 0


def record():
    """MNN's record (``implementations.registry.builtin``)."""
    from roialign_suite.implementations.records import Divergence, Implementation

    empty_grid_nan = Divergence(
        "mnn-empty-grid-nan",
        "aligned=True, adaptive grid, a box of zero width or height (or inverted by less than one bin): the grid "
        "ceil(roi_size / pooled) is 0 samples; the definition (reference, torchvision) divides by max(count, 1) "
        "and gives 0, MNN's MNNRoiAlignAvg multiplies the empty sum by 1 / 0 and returns NaN for every bin",
        "known_divergences/mnn_empty_adaptive_grid_nan.json",
        boxes=_empty_adaptive_grid, cases=_aligned_adaptive,
    )
    inverted_box_crash = Divergence(
        "mnn-inverted-box-segfault",
        "aligned=True, adaptive grid, a box inverted along both axes: both grids are negative, their product "
        "positive; the definition (reference, torchvision) takes no sample and gives 0, MNN builds no sample "
        "table and then reads grid_h * grid_w entries of the empty one: the process dies with SIGSEGV",
        "known_divergences/mnn_inverted_box_adaptive_grid_segfault.json",
        boxes=_inverted_both_axes_adaptive_grid, cases=_aligned_adaptive, excluded=True,
    )
    return Implementation(
        "mnn", roi_align, unavailable=unavailable(), differentiable=True, dtypes=DTYPES,
        coordinates=torch.float32, divergences=(empty_grid_nan, inverted_box_crash), packages=("mnn",), xfails="mnn.txt",
        preload=("MNN",),
    )
