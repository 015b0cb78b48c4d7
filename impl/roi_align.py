"""``impl.roi_align``: the Python front end of our RoIAlign operator, a drop-in for ``torchvision.ops.roi_align``.

The front ends check what metadata can tell (kinds, shapes, dtypes, devices)
and call the ``torch.ops.roialign_suite`` operators (``impl.ops``), which check
the data and run the Numba kernels. ``roi_align`` is TorchScript-compatible
and, like torchvision's, wrapped with ``torch.fx.wrap``, so
``torch.fx.symbolic_trace`` keeps it as one leaf call.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from roialign_suite.impl import ops as _ops  # noqa: F401 (registers torch.ops.roialign_suite)
from roialign_suite.impl.inputs import (
    check_features,
    check_sampling_ratio,
    check_spatial_scale,
    output_size_pair,
    rois_from_boxes,
)


@torch.fx.wrap
def roi_align(
    input: Tensor,
    boxes: Union[Tensor, List[Tensor]],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with ``torchvision.ops.roi_align``'s contract, on the CPU.

    Args:
        input: ``[N, C, H, W]`` float16, bfloat16, float32 or float64, any
            strides; any of N, C, H, W may be 0 (``H = 0`` or ``W = 0``: zeros).
        boxes: ``Tensor[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` or a
            list of per-image ``Tensor[L, 4]``, in image pixels, input's dtype.
        output_size: ``int`` or ``(h, w)``.
        spatial_scale: feature-map pixels per image pixel (1 / stride).
        sampling_ratio: samples per bin and axis; ``<= 0`` is adaptive,
            ``ceil(roi_size / output_size)`` per RoI.
        aligned: ``True`` shifts boxes by -0.5 pixel (half-pixel centres);
            ``False`` is the legacy maskrcnn_benchmark convention.

    Returns:
        ``[K, C, h, w]`` contiguous, input's dtype; differentiable w.r.t. input
        (``torch.ops.roialign_suite.roi_align``).
    """
    if not torch.jit.is_scripting():
        output_size = output_size_pair(output_size)
        spatial_scale = check_spatial_scale(spatial_scale)
        sampling_ratio = check_sampling_ratio(sampling_ratio)
        aligned = bool(aligned)
    check_features(input)
    rois = rois_from_boxes(boxes, input)
    return torch.ops.roialign_suite.roi_align(input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned)


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
    of one dtype, ``rois`` a ``Tensor[K, 5]`` (image pixels), ``levels``
    int64 ``[K]`` in ``[0, len(features))`` (checked by the operator). Returns
    ``[K, C, h, w]``, differentiable with respect to every level
    (``torch.ops.roialign_suite.multilevel_roi_align``).
    """
    if len(scales) != len(features):
        raise ValueError(f"{len(features)} feature maps but {len(scales)} scales")
    for i, feature in enumerate(features):
        check_features(feature, f"features[{i}]")
    if not isinstance(levels, Tensor) or levels.dtype != torch.int64 or levels.shape != (rois.shape[0],):
        got = f"{levels.dtype} of shape {list(levels.shape)}" if isinstance(levels, Tensor) else type(levels).__name__
        raise ValueError(f"levels must be an int64 Tensor of shape [{rois.shape[0]}], got {got}")
    pooled = output_size_pair(output_size)
    return torch.ops.roialign_suite.multilevel_roi_align(
        list(features), rois, levels, [check_spatial_scale(s) for s in scales], pooled[0], pooled[1],
        check_sampling_ratio(sampling_ratio), bool(aligned),
    )


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`, as ``torchvision.ops.RoIAlign`` (scriptable)."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
