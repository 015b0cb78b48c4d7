"""PaddlePaddle's CPU RoIAlign (``paddle.vision.ops.roi_align``) behind torchvision's signature.

What the adapter converts, and nothing else (the kernel's own arithmetic is
what the suite sees):

- Arguments are checked by the suite's front end (``reference.inputs``:
  torchvision's contract, one-line errors naming the argument or box row);
  the adaptive-grid size limit and float64 overflow are refused as
  ``reference.roi_align.check_geometry`` refuses them for the reference.
- dtypes: Paddle registers its CPU kernel for float32, float64 and int32 only;
  float16 and bfloat16 input is refused with a ``TypeError`` naming the dtype
  (torchvision's CPU kernel takes float16). No dtype is cast: features and
  boxes go in the caller's dtype.
- Layout: ``input`` of any strides is made contiguous NCHW (``.contiguous()``),
  then handed over through numpy (``paddle.to_tensor`` copies).
- Boxes: Paddle takes ``boxes [K, 4]`` (x1, y1, x2, y2 in image pixels, the
  same numbers torchvision takes) grouped by image, with ``boxes_num`` (int32,
  length N: how many rows belong to each image) instead of a batch-index
  column. The rows are stably sorted by batch index, counted per image, and
  the output rows are put back in the caller's order. The list form
  (per-image ``Tensor[L, 4]``) is the same after ``reference.inputs`` turns it
  into rows.
- The aligned shift: passed through (``aligned=True`` is Paddle's own -0.5
  half-pixel shift, ``aligned=False`` the legacy one); Paddle's default is
  ``aligned=True``, so the caller's value is always passed explicitly.
- ``sampling_ratio <= 0`` is passed as is (Paddle's kernel treats ``<= 0`` as
  adaptive, as torchvision does). ``spatial_scale`` is a Python float, which
  Paddle stores as a float32 attribute (its divergence on float64, not a cast
  of ours).
- One call of Paddle's op per call, all RoIs at once (K = 0 included: Paddle
  returns ``[0, C, h, w]`` itself).
- Backward: :class:`_PaddleRoIAlign` keeps Paddle's graph (input with
  ``stop_gradient=False``) and its backward runs ``paddle.grad``, i.e. Paddle's
  own ``roi_align_grad`` kernel, on the upstream gradient permuted into the
  sorted row order; the input gradient comes back in the input's dtype. Boxes
  get no gradient (as in torchvision).

PaddlePaddle is optional (``pip install 'roialign-suite[paddle]'``); this
module imports it only inside the functions, and :func:`unavailable` says why
the adapter cannot run here, or None.
"""
from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from roialign_suite.implementations.records import (
    FLOAT_DTYPES, NEGATIVE_GRID_REFUSED, Divergence, Implementation,
)
from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.roi_align import check_geometry

NAME = "paddle"
# The dtypes Paddle's CPU roi_align kernel is registered for (besides int32, which
# torchvision's contract refuses for a feature map).
DTYPES = FLOAT_DTYPES


def unavailable() -> Optional[str]:
    """Why the adapter cannot run here, or None."""
    if importlib.util.find_spec("paddle") is None:
        return "paddlepaddle not installed (pip install 'roialign-suite[paddle]')"
    return None


def _paddle():
    import paddle

    paddle.set_device("cpu")
    return paddle


def _grouped_by_image(rois: Tensor, num_images: int) -> Tuple[Tensor, np.ndarray]:
    """``rois [K, 5]`` -> (order: the stable sort of rows by batch index, ``boxes_num`` int32 [N])."""
    batch = rois[:, 0].to(torch.int64)
    order = torch.sort(batch, stable=True).indices
    boxes_num = torch.bincount(batch, minlength=num_images).to(torch.int32).numpy()
    return order, boxes_num


def _paddle_forward(features: np.ndarray, boxes: np.ndarray, boxes_num: np.ndarray, pooled: Tuple[int, int],
                    spatial_scale: float, sampling_ratio: int, aligned: bool, requires_grad: bool):
    """Paddle's roi_align on numpy arrays: (paddle input, paddle output)."""
    paddle = _paddle()
    x = paddle.to_tensor(features, stop_gradient=not requires_grad)
    out = paddle.vision.ops.roi_align(
        x, paddle.to_tensor(boxes), paddle.to_tensor(boxes_num), output_size=pooled,
        spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned,
    )
    return x, out


class _PaddleRoIAlign(torch.autograd.Function):
    """Forward and backward both Paddle's own kernels; gradient for ``input`` only."""

    @staticmethod
    def forward(ctx, input, sorted_boxes, order, boxes_num, pooled, spatial_scale, sampling_ratio, aligned):
        x, out = _paddle_forward(
            input.detach().contiguous().numpy(), sorted_boxes.numpy(), boxes_num, pooled, spatial_scale,
            sampling_ratio, aligned, requires_grad=input.requires_grad,
        )
        result = torch.empty((order.numel(), input.shape[1]) + pooled, dtype=input.dtype)
        result[order] = torch.from_numpy(np.array(out.numpy()))
        if input.requires_grad:
            ctx.paddle = (x, out)
            ctx.order = order
        return result

    @staticmethod
    def backward(ctx, grad_output):
        paddle = _paddle()
        x, out = ctx.paddle
        upstream = grad_output.detach()[ctx.order].contiguous().numpy()
        (grad_x,) = paddle.grad([out], [x], grad_outputs=[paddle.to_tensor(upstream)], retain_graph=True)
        grad_input = torch.from_numpy(np.array(grad_x.numpy())).to(grad_output.dtype)
        return (grad_input,) + (None,) * 7


# torch.compile must not trace into the Paddle call: inside a compiled region Dynamo traces
# `Tensor.numpy()` as its own array type, which Paddle then takes for a CUDA array and refuses
# (found by test_compiled_matches_eager once it compiled the kernel in its worker). Opaque, the
# call runs eagerly between the graphs, as any foreign runtime's must.
@torch.compiler.disable
def roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align`` computed by PaddlePaddle's CPU kernel (see the module docstring).

    ``input`` CPU float32/float64 ``[N, C, H, W]`` (any strides); ``boxes``
    ``Tensor[K, 5]`` (batch_index, x1, y1, x2, y2 in image pixels) or a list of
    per-image ``Tensor[L, 4]``, in the input's dtype. Returns ``[K, C, h, w]``
    of the input's dtype, rows in the caller's order; differentiable in ``input``.
    """
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if isinstance(input, Tensor) and input.dtype not in DTYPES and input.is_floating_point():
        raise TypeError(f"PaddlePaddle's CPU roi_align takes float32 or float64 input; got {input.dtype}")
    args = inputs.roi_align_args(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, dtypes=DTYPES)
    if input.device.type != "cpu":
        raise ValueError(f"the paddle adapter takes CPU tensors, got input on {input.device}")
    rois, pooled = args.rois, args.output_size
    check_geometry(rois, pooled, args.spatial_scale, args.sampling_ratio, args.aligned)
    order, boxes_num = _grouped_by_image(rois, input.shape[0])
    # rois are float64 holding the caller's exact values: back to the input's dtype exactly.
    sorted_boxes = rois[order, 1:].to(input.dtype).contiguous()
    return _PaddleRoIAlign.apply(input, sorted_boxes, order, boxes_num, pooled, args.spatial_scale,
                                 args.sampling_ratio, args.aligned)


def _float64_scale_not_float32(case) -> bool:
    return case.dtype == "float64" and float(np.float32(case.spatial_scale)) != case.spatial_scale


def _aligned_adaptive(case) -> bool:
    return case.aligned and case.sampling_ratio <= 0


def paddle_adaptive_grid(case, geometry) -> Tuple[int, int]:
    """The signed adaptive grid (grid_h, grid_w) Paddle's forward computes for ``geometry``'s row
    of ``case`` (aligned=True): in the case's dtype, the scale rounded to float32, ``ceil(roi / pooled)``.

    Near ``roi / pooled == -1`` or ``0`` its rounding can give another grid than the float64
    definition's, and which grid decides between NaN, a hang and unbounded memory; so the rules
    below use this grid, not the definition's.
    """
    row = case.geometries().index(geometry)
    real = np.float32 if case.dtype == "float32" else np.float64
    scale, half = real(np.float32(case.spatial_scale)), real(0.5)
    x1, y1, x2, y2 = (real(v) for v in case.boxes[row][1:])
    roi_w = (x2 * scale - half) - (x1 * scale - half)
    roi_h = (y2 * scale - half) - (y1 * scale - half)
    pooled_h, pooled_w = case.output_size
    return int(np.ceil(roi_h / real(pooled_h))), int(np.ceil(roi_w / real(pooled_w)))


def _paddle_grid_is(rule):
    return lambda case, geometry: rule(*paddle_adaptive_grid(case, geometry))


PADDLE_SCALE_IN_FLOAT32 = Divergence(
    "paddle-spatial-scale-float32",
    "Paddle's op stores spatial_scale as a float32 attribute: on float64 input a scale float32 cannot hold "
    "exactly (not a dyadic fraction) moves every sample by ~1e-8 of its coordinate; the definition (and "
    "torchvision) use the float64 scale",
    "known_divergences/paddle_float64_spatial_scale_*",
    cases=_float64_scale_not_float32,
)
PADDLE_EMPTY_GRID_NAN = Divergence(
    "paddle-empty-grid-nan",
    "aligned=True, adaptive grid with no samples along one axis (a zero-width/-height box, or one inverted by "
    "less than a bin): Paddle multiplies the empty sum by 1 / (grid_h * grid_w) = inf and returns NaN; the "
    "definition (and torchvision) divide by max(grid_h * grid_w, 1) and give 0",
    "known_divergences/paddle_empty_adaptive_grid_nan.json",
    boxes=_paddle_grid_is(lambda grid_h, grid_w: grid_h == 0 or (grid_w == 0 and grid_h > 0)),
    cases=_aligned_adaptive,
)
PADDLE_EMPTY_COLUMNS_NEGATIVE_ROWS_HANG = Divergence(
    "paddle-negative-rows-empty-columns-hang",
    "aligned=True, adaptive grid, a box of zero width inverted along y by at least one bin (grid_w = 0, "
    "grid_h < 0): Paddle's row loop runs to (size_t) grid_h, about 2**64 iterations, and the call never "
    "returns; the definition gives 0 (an excluded box: it would hang the run)",
    "known_divergences/paddle_negative_rows_empty_columns_hang.json",
    boxes=_paddle_grid_is(lambda grid_h, grid_w: grid_w == 0 and grid_h < 0),
    cases=_aligned_adaptive,
    excluded=True,
)
PADDLE_INVERTED_BOTH_AXES_EXHAUSTS_MEMORY = Divergence(
    "paddle-inverted-both-axes-exhausts-memory",
    "aligned=True, adaptive grid, a box inverted along both axes by at least one bin (grid_h < 0 and "
    "grid_w < 0): as size_t the two negative grids multiply to a small reservation, then the loops run to "
    "(size_t) grid_h pushing a sample each step: memory grows by ~0.4 GB/s until the allocator fails and the "
    "process aborts (SIGABRT, std::bad_alloc) or the machine runs out; the definition gives 0 (an excluded "
    "box: it would kill the run)",
    "known_divergences/paddle_inverted_both_axes_exhausts_memory.json",
    boxes=_paddle_grid_is(lambda grid_h, grid_w: grid_h < 0 and grid_w < 0),
    cases=_aligned_adaptive,
    excluded=True,
)
PADDLE_ALIGNED_BACKWARD_CLAMPS_THE_ROI = Divergence(
    "paddle-aligned-backward-clamps-roi-to-one-pixel",
    "backward only, aligned=True, a RoI under one feature-map pixel along an axis (tiny, zero-size or "
    "inverted): Paddle's roi_align_grad clamps roi_width/roi_height to >= 1 whatever `aligned` is, its "
    "forward clamps only for aligned=False; so the gradient is spread over other pixels (and other grid "
    "sizes) than the forward sampled: it is not the forward's adjoint. The definition and torchvision clamp "
    "only for aligned=False in both directions",
    "known_divergences/paddle_aligned_backward_clamps_roi_*",
    boxes=lambda case, g: g.roi_h < 1 or g.roi_w < 1,
    cases=lambda case: case.aligned,
)


DIVERGENCES: Tuple[Divergence, ...] = (
    NEGATIVE_GRID_REFUSED, PADDLE_SCALE_IN_FLOAT32, PADDLE_EMPTY_GRID_NAN, PADDLE_EMPTY_COLUMNS_NEGATIVE_ROWS_HANG,
    PADDLE_INVERTED_BOTH_AXES_EXHAUSTS_MEMORY, PADDLE_ALIGNED_BACKWARD_CLAMPS_THE_ROI,
)


def record() -> Implementation:
    """PaddlePaddle's registry entry: where it rounds, what it takes, how it diverges.

    Coordinates and sums are in the input's dtype (the kernel is templated on it: sample
    coordinates, bilinear weights and ``std::accumulate`` of each bin in ``T``; the backward
    accumulates into the gradient in ``T``), so ``coordinates``/``sums`` keep the defaults.
    """
    return Implementation(
        NAME, roi_align, unavailable=unavailable(), differentiable=True, dtypes=DTYPES,
        divergences=DIVERGENCES, packages=("paddlepaddle",), xfails="paddle.txt", preload=("paddle",),
    )
