"""``impl.roi_align``: the Numba CPU RoIAlign, a drop-in for ``torchvision.ops.roi_align``."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numba
import numpy as np
import torch
from torch import Tensor, nn

from roialign_suite.impl import kernels
from roialign_suite.impl.inputs import (
    BoxesArg,
    check_adaptive_grid,
    check_features,
    check_sampling_ratio,
    check_spatial_scale,
    output_size_pair,
    rois_from_boxes,
)
from roialign_suite.impl.storage import is_channels_last, kernel_array, new_tensor, nhwc


def _use_torch_threads() -> int:
    """Run the kernels on as many threads as torch would use (torch.set_num_threads)."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads


def _row_bands(threads: int, total_bytes: int) -> int:
    """How many row bands the backward splits the gradient into.

    A band's rows are zeroed, accumulated into and copied out to NCHW in one
    go, so a band should fit in cache next to the other threads' (2 MiB
    each); and bands are handed out one at a time (parallel_chunksize 1), so
    at least 8 per thread even out RoIs crowded into part of the pyramid.
    Each band costs one pass over the RoI list.
    """
    return max(8 * threads, -(-total_bytes // (2 << 20)))


def _locality_order(rois64: np.ndarray, levels64: np.ndarray) -> np.ndarray:
    """RoIs by level, image, then vertical centre: the forward's visiting order.

    Consecutive RoIs then read overlapping feature rows while they are in
    cache (about 15% off the P2 box-head forward), and each thread's
    contiguous share of the RoIs stays in one region of one map.
    """
    return np.lexsort((rois64[:, 2] + rois64[:, 4], rois64[:, 0], levels64)).astype(np.int64)


def _level_groups(rows: List[Optional[int]], scales: Sequence[float], levels: np.ndarray):
    """The kernel calls for the levels taking part (``rows[l] = N * H_l``, ``None`` for a level left out).

    Yields ``(slots, scales4, group_levels, row_starts)``: each call takes
    :data:`kernels.MAX_LEVELS` levels, ``slots`` their indices (unused slots
    repeat a level of the group); RoIs of other groups get level -1
    (skipped); ``row_starts`` is each slot's first global pixel row, then the
    total (unused slots own no rows).
    """
    width = kernels.MAX_LEVELS
    for first in range(0, len(rows), width):
        group = [rows[i] if i < len(rows) else None for i in range(first, first + width)]
        taking_part = [first + slot for slot, r in enumerate(group) if r is not None]
        if not taking_part:
            continue
        slots = [first + slot if r is not None else taking_part[0] for slot, r in enumerate(group)]
        row_starts = np.concatenate(([0], np.cumsum([r or 0 for r in group]))).astype(np.int64)
        group_scales = np.array([scales[i] for i in slots], dtype=np.float64)
        if len(rows) <= width:
            group_levels = levels
        else:
            inside = (levels >= first) & (levels < first + width)
            group_levels = np.where(inside, levels - first, -1)
        yield slots, group_scales, group_levels, row_starts


class _RoIAlignFunction(torch.autograd.Function):
    """RoIAlign of every RoI on its own level: ``(rois, levels, params, *features) -> [K, C, h, w]``."""

    @staticmethod
    def forward(ctx, rois, levels, params, *features):
        pooled, scales, sampling_ratio, aligned = params
        c = features[0].shape[1]
        out = new_tensor((rois.shape[0], c) + pooled, features[0].dtype)
        levels64 = levels.numpy()
        used = np.bincount(levels64, minlength=len(features)) > 0
        if rois.shape[0] > 0:
            _use_torch_threads()
            maps = [nhwc(f, slot) if used[slot] else None for slot, f in enumerate(features)]
            rois64 = rois.detach().double().contiguous().numpy()
            rows = [f.shape[0] * f.shape[2] if used[slot] else None for slot, f in enumerate(features)]
            order = _locality_order(rois64, levels64)
            for slots, group_scales, group_levels, _ in _level_groups(rows, scales, levels64):
                kernels.roi_align_forward_nhwc(
                    *[maps[i] for i in slots], group_scales, rois64, group_levels, order, pooled[0], pooled[1],
                    sampling_ratio, aligned, kernel_array(out),
                )
        ctx.save_for_backward(rois, levels)
        ctx.params = params
        ctx.layouts = [(f.shape, f.dtype, is_channels_last(f)) for f in features]
        ctx.used = used
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        rois, levels = ctx.saved_tensors
        _, scales, sampling_ratio, aligned = ctx.params
        wanted = [ctx.needs_input_grad[3 + slot] and ctx.used[slot] for slot in range(len(ctx.layouts))]
        # Per level taking part, the gradient handed back, as the kernel writes it:
        # NHWC for a channels_last input, else NCHW.
        handed = [
            new_tensor((shape[0], shape[2], shape[3], shape[1]) if channels_last else shape, dtype) if want else None
            for (shape, dtype, channels_last), want in zip(ctx.layouts, wanted)
        ]
        if any(wanted):
            threads = _use_torch_threads()
            grad_nhwc = nhwc(grad_output, "grad_output", sums=True)
            levels64 = levels.numpy()
            levels64 = np.where(np.array(wanted)[levels64], levels64, -1)
            rois64 = rois.detach().double().contiguous().numpy()
            shapes = [layout[0] for layout in ctx.layouts]
            rows = [shape[0] * shape[2] if want else None for shape, want in zip(shapes, wanted)]
            bands = _row_bands(threads, sum(g.numel() * grad_nhwc.itemsize for g in handed if g is not None))
            for slots, group_scales, group_levels, row_starts in _level_groups(rows, scales, levels64):
                nchw = np.array([not ctx.layouts[i][2] for i in slots])
                with numba.parallel_chunksize(1):
                    kernels.roi_align_backward_nhwc(
                        grad_nhwc, rois64, group_levels, group_scales, row_starts,
                        np.array([shapes[i][2] for i in slots]), np.array([shapes[i][3] for i in slots]), bands,
                        *[kernel_array(handed[i]) for i in slots], nchw, sampling_ratio, aligned,
                    )
        grads = []
        for slot, ((shape, dtype, channels_last), needed) in enumerate(zip(ctx.layouts, ctx.needs_input_grad[3:])):
            if handed[slot] is not None:
                grads.append(handed[slot].permute(0, 3, 1, 2) if channels_last else handed[slot])
            else:
                grads.append(_zero_grad(shape, dtype, channels_last) if needed else None)
        return (None, None, None, *grads)


def _zero_grad(shape, dtype, channels_last) -> Tensor:
    if channels_last:
        n, c, h, w = shape
        return new_tensor((n, h, w, c), dtype, zeros=True).permute(0, 3, 1, 2)
    return new_tensor(shape, dtype, zeros=True)


def multilevel_roi_align(
    features: Sequence[Tensor],
    rois: Tensor,
    levels: Tensor,
    scales: Sequence[float],
    output_size,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign of row ``k`` of ``rois`` on ``features[levels[k]]`` at ``scales[levels[k]]``, in one pass.

    The pooler's kernel call: ``features`` are ``[N, C, H_l, W_l]`` CPU maps
    of one dtype, ``rois`` a checked ``Tensor[K, 5]`` (image pixels),
    ``levels`` int64 ``[K]`` in ``[0, len(features))``. Returns
    ``[K, C, h, w]``, differentiable with respect to every level.
    """
    if len(scales) != len(features):
        raise ValueError(f"{len(features)} feature maps but {len(scales)} scales")
    for i, feature in enumerate(features):
        if feature.device.type != "cpu":
            raise ValueError(f"impl.roi_align runs on the CPU; features[{i}] is on {feature.device}")
    levels = torch.as_tensor(levels)
    if levels.dtype != torch.int64 or levels.shape != (rois.shape[0],):
        raise ValueError(f"levels must be int64 of shape ({rois.shape[0]},), got {levels.dtype} {tuple(levels.shape)}")
    outside = (levels < 0) | (levels >= len(features))
    if bool(outside.any()):
        row = int(torch.nonzero(outside)[0])
        raise ValueError(f"levels[{row}] = {int(levels[row])} is not a level of {len(features)} feature maps")
    params = (output_size_pair(output_size), tuple(float(s) for s in scales), sampling_ratio, bool(aligned))
    return _RoIAlignFunction.apply(rois, levels.contiguous(), params, *features)


def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with ``torchvision.ops.roi_align``'s contract, on the CPU.

    Args:
        input: ``[N, C, H, W]`` float16, bfloat16, float32 or float64, any
            strides. The halves are read as they are stored and summed in
            float32, and the result is rounded once to their dtype.
        boxes: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` or a
            list of per-image ``Tensor[L, 4]``, in image pixels, input's dtype.
        output_size: ``int`` or ``(h, w)``.
        spatial_scale: feature-map pixels per image pixel (1 / stride).
        sampling_ratio: samples per bin and axis; ``<= 0`` is adaptive,
            ``ceil(roi_size / output_size)`` per RoI.
        aligned: ``True`` shifts boxes by -0.5 pixel (half-pixel centres);
            ``False`` is the legacy maskrcnn_benchmark convention.

    Returns:
        ``[K, C, h, w]`` contiguous, input's dtype; differentiable w.r.t. input.
    """
    check_features(input)
    if input.device.type != "cpu":
        raise ValueError(f"impl.roi_align runs on the CPU; input is on {input.device}")
    rois = rois_from_boxes(boxes, input)
    pooled = output_size_pair(output_size)
    spatial_scale = check_spatial_scale(spatial_scale)
    sampling_ratio = check_sampling_ratio(sampling_ratio)
    check_adaptive_grid(rois, pooled, spatial_scale, sampling_ratio, bool(aligned))
    levels = torch.zeros(rois.shape[0], dtype=torch.int64)
    return _RoIAlignFunction.apply(rois, levels, (pooled, (spatial_scale,), sampling_ratio, bool(aligned)), input)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`, as ``torchvision.ops.RoIAlign``.

    Subclasses swap the implementation by overriding ``roi_align``.
    """

    roi_align = staticmethod(roi_align)

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        return self.roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
