"""``impl.roi_align``: the Numba CPU RoIAlign, a drop-in for ``torchvision.ops.roi_align``."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numba
import numpy as np
import torch
from torch import Tensor, nn

from impl import kernels
from impl.inputs import (
    BoxesArg,
    check_adaptive_grid,
    check_features,
    check_sampling_ratio,
    check_spatial_scale,
    output_size_pair,
    rois_from_boxes,
)


class _Scratch(threading.local):
    """Per-thread NHWC buffers, reused across calls.

    A fresh 100 MB array costs more in page faults than the transposition
    that fills it, so the layout conversion and the backward's accumulator
    reuse buffers. The last ``KEEP`` shapes are kept (one per FPN level).
    """

    KEEP = 4

    def __init__(self):
        self.buffers: "OrderedDict[tuple, np.ndarray]" = OrderedDict()

    def get(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        buffer = self.buffers.pop(key, None)
        if buffer is None:
            buffer = np.empty(shape, dtype=dtype)
        self.buffers[key] = buffer
        while len(self.buffers) > self.KEEP:
            self.buffers.popitem(last=False)
        return buffer


_scratch = _Scratch()


def _is_channels_last(t: Tensor) -> bool:
    return t.permute(0, 2, 3, 1).is_contiguous()


def _nhwc(t: Tensor) -> np.ndarray:
    """``[N, C, H, W]`` tensor -> C-contiguous ``[N, H, W, C]`` array (no copy if channels_last)."""
    t = t.detach()
    if _is_channels_last(t):
        return t.permute(0, 2, 3, 1).numpy()
    n, c, h, w = t.shape
    out = _scratch.get((n, h, w, c), t.numpy().dtype)
    kernels.nchw_to_nhwc(t.numpy(), out)
    return out


def _use_torch_threads() -> int:
    """Run the kernels on as many threads as torch would use (torch.set_num_threads)."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads


def _channel_block(channels: int, threads: int) -> int:
    # One block per thread: every block is a full pass over the RoIs, and
    # more passes cost more memory traffic than they gain in balance.
    return max(16, -(-channels // threads))


class _RoIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, pooled, spatial_scale, sampling_ratio, aligned):
        rois64 = rois.detach().double().contiguous().numpy()
        n, c, _, _ = input.shape
        out = torch.empty((rois.shape[0], c) + pooled, dtype=input.dtype)
        if rois.shape[0] > 0:
            _use_torch_threads()
            kernels.roi_align_forward_nhwc(
                _nhwc(input), rois64, spatial_scale, pooled[0], pooled[1], sampling_ratio, aligned, out.numpy()
            )
        ctx.save_for_backward(rois)
        channels_last = _is_channels_last(input)
        ctx.params = (input.shape, input.dtype, channels_last, spatial_scale, sampling_ratio, aligned)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        shape, dtype, channels_last, spatial_scale, sampling_ratio, aligned = ctx.params
        n, c, h, w = shape
        if channels_last:
            grad_nhwc = torch.zeros((n, h, w, c), dtype=dtype)  # handed back as the gradient
        else:
            grad_nhwc = torch.from_numpy(_scratch.get((n, h, w, c), torch.empty(0, dtype=dtype).numpy().dtype))
            grad_nhwc.zero_()
        if rois.shape[0] > 0:
            threads = _use_torch_threads()
            kernels.roi_align_backward_nhwc(
                grad_output.detach().permute(0, 2, 3, 1).contiguous().numpy(),
                rois.detach().double().contiguous().numpy(),
                spatial_scale,
                sampling_ratio,
                aligned,
                _channel_block(c, threads),
                grad_nhwc.numpy(),
            )
        # Hand back the input's own layout: a channels_last input gets a
        # channels_last gradient for free; anything else gets a contiguous one.
        if channels_last:
            grad = grad_nhwc.permute(0, 3, 1, 2)
        else:
            grad = torch.empty(shape, dtype=dtype)
            kernels.nhwc_to_nchw(grad_nhwc.numpy(), grad.numpy())
        return grad, None, None, None, None, None


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
        input: ``[N, C, H, W]`` float32 or float64, any strides.
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
    return _RoIAlignFunction.apply(input, rois, pooled, spatial_scale, sampling_ratio, bool(aligned))


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
