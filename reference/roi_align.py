"""Float64 RoIAlign written from the definition, as plain loops.

RoIAlign is a linear map from the feature map to the pooled output: every
output bin ``(k, c, ph, pw)`` is the mean over a ``grid_h x grid_w`` grid of
sample points of the bilinear interpolation of channel ``c`` of image
``batch_index(k)``. :func:`bin_taps` lists that map's non-zero entries for one
RoI (output bin, input pixel, weight); the forward gathers through it and the
backward scatters through it, so the backward is the exact transpose.

Edge rules follow torchvision's kernel (``csrc/ops/cpu/roi_align_kernel.cpp``)
and each is marked where it is applied. Coordinates are computed in float64
in the kernel's order of operations, so for float64 inputs the sample points
are bit-for-bit the kernel's.
"""
from __future__ import annotations

import math
from typing import Iterator, List, NamedTuple, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import MAX_GRID, BoxesArg

Tap = Tuple[int, int, int, int, float]  # (ph, pw, y, x, weight)


def sampling_grid(roi_size: float, pooled: int, sampling_ratio: int) -> int:
    """Samples per bin along one axis: fixed, or ``ceil(roi_size / pooled)``.

    The adaptive grid may come out zero or negative for an inverted box with
    ``aligned=True``; the bin then has no samples (torchvision does the same).
    """
    if sampling_ratio > 0:
        return sampling_ratio
    return int(math.ceil(roi_size / pooled))


def bilinear_taps(y: float, x: float, height: int, width: int):
    """The (row, col, weight) taps of bilinear interpolation at ``(y, x)``.

    Pixel ``(i, j)`` sits at integer coordinates. Rules as in torchvision:
    a sample outside ``[-1, height] x [-1, width]`` contributes nothing
    (boundaries included: ``y == -1`` and ``y == height`` still count); one in
    ``[-1, 0]`` is clamped to 0; one at or past the last row/column is clamped
    to it. A map without pixels (``height`` or ``width`` 0) has nothing to
    read: no taps, so every bin of it is 0 and its gradient is empty.
    """
    if height == 0 or width == 0:
        return []
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return []
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low = int(math.floor(y))
    x_low = int(math.floor(x))
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return [
        (y_low, x_low, hy * hx),
        (y_low, x_high, hy * lx),
        (y_high, x_low, ly * hx),
        (y_high, x_high, ly * lx),
    ]


class RoIGeometry(NamedTuple):
    """One RoI in feature-map pixels: where its bins start, their size and sample grid."""

    start_h: float
    start_w: float
    roi_h: float
    roi_w: float
    bin_h: float
    bin_w: float
    grid_h: int
    grid_w: int
    count: int


def roi_geometry(
    roi: Tuple[float, float, float, float],
    pooled: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> RoIGeometry:
    """The geometry of ``roi = (x1, y1, x2, y2)`` (image pixels), in float64."""
    x1, y1, x2, y2 = (float(v) for v in roi)
    pooled_h, pooled_w = pooled
    # aligned=True shifts by half a pixel so that pixel centres sit at +0.5.
    offset = 0.5 if aligned else 0.0
    start_w = x1 * spatial_scale - offset
    start_h = y1 * spatial_scale - offset
    roi_w = x2 * spatial_scale - offset - start_w
    roi_h = y2 * spatial_scale - offset - start_h
    if not aligned:
        # Legacy maskrcnn_benchmark rule: malformed boxes are forced to 1x1.
        roi_w = max(roi_w, 1.0)
        roi_h = max(roi_h, 1.0)
    grid_h = sampling_grid(roi_h, pooled_h, sampling_ratio)
    grid_w = sampling_grid(roi_w, pooled_w, sampling_ratio)
    # torchvision: count = max(grid_h * grid_w, 1), so an empty grid averages to 0.
    count = max(grid_h * grid_w, 1)
    return RoIGeometry(
        start_h, start_w, roi_h, roi_w, roi_h / pooled_h, roi_w / pooled_w, grid_h, grid_w, count
    )


def sample_points(geometry: RoIGeometry, pooled: Tuple[int, int]) -> Iterator[Tuple[int, int, float, float]]:
    """Every sample ``(ph, pw, y, x)`` of one RoI, in feature-map pixels, in summation order."""
    g = geometry
    for ph in range(pooled[0]):
        for iy in range(g.grid_h):
            y = g.start_h + ph * g.bin_h + (iy + 0.5) * g.bin_h / g.grid_h
            for pw in range(pooled[1]):
                for ix in range(g.grid_w):
                    x = g.start_w + pw * g.bin_w + (ix + 0.5) * g.bin_w / g.grid_w
                    yield ph, pw, y, x


def bin_taps(
    roi: Tuple[float, float, float, float],
    height: int,
    width: int,
    pooled: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Iterator[Tap]:
    """Every ``(ph, pw, y, x, weight)`` of one RoI's linear map.

    ``roi`` is ``(x1, y1, x2, y2)`` in image pixels; the weight already
    includes the ``1 / count`` of the bin average.
    """
    geometry = roi_geometry(roi, pooled, spatial_scale, sampling_ratio, aligned)
    for ph, pw, y, x in sample_points(geometry, pooled):
        for row, col, weight in bilinear_taps(y, x, height, width):
            yield ph, pw, row, col, weight / geometry.count


def roi_align_forward(
    features: np.ndarray, rois: np.ndarray, pooled, spatial_scale, sampling_ratio, aligned
) -> np.ndarray:
    """``features [N, C, H, W]``, ``rois [K, 5]`` (float64) -> ``[K, C, h, w]``."""
    _, channels, height, width = features.shape
    out = np.zeros((rois.shape[0], channels) + tuple(pooled), dtype=np.float64)
    for k, roi in enumerate(rois):
        image = features[int(roi[0])]
        for ph, pw, row, col, weight in bin_taps(
            roi[1:], height, width, pooled, spatial_scale, sampling_ratio, aligned
        ):
            out[k, :, ph, pw] += weight * image[:, row, col]
    return out


def roi_align_backward(
    grad_output: np.ndarray, rois: np.ndarray, shape, spatial_scale, sampling_ratio, aligned
) -> np.ndarray:
    """The transpose of :func:`roi_align_forward`: ``[K, C, h, w]`` -> ``shape``."""
    _, _, height, width = shape
    pooled = grad_output.shape[2:]
    grad = np.zeros(shape, dtype=np.float64)
    for k, roi in enumerate(rois):
        image_grad = grad[int(roi[0])]
        for ph, pw, row, col, weight in bin_taps(
            roi[1:], height, width, pooled, spatial_scale, sampling_ratio, aligned
        ):
            image_grad[:, row, col] += weight * grad_output[k, :, ph, pw]
    return grad


class _ReferenceRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, pooled, spatial_scale, sampling_ratio, aligned):
        rois64 = rois.detach().cpu().double().numpy()
        out = roi_align_forward(
            input.detach().cpu().double().numpy(), rois64, pooled, spatial_scale, sampling_ratio, aligned
        )
        ctx.save_for_backward(rois)
        ctx.params = (input.shape, input.dtype, input.device, spatial_scale, sampling_ratio, aligned)
        return torch.from_numpy(out).to(device=input.device, dtype=input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        shape, dtype, device, spatial_scale, sampling_ratio, aligned = ctx.params
        grad = roi_align_backward(
            grad_output.detach().cpu().double().numpy(),
            rois.detach().cpu().double().numpy(),
            tuple(shape),
            spatial_scale,
            sampling_ratio,
            aligned,
        )
        return torch.from_numpy(grad).to(device=device, dtype=dtype), None, None, None, None, None


def check_geometry(
    rois: Tensor, pooled: Tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool, first_row: int = 0
) -> None:
    """Refuse a row the loops above cannot run: ``ValueError`` naming it.

    Two ways: its coordinates times ``spatial_scale`` overflow float64 (the
    sample points would be inf or NaN), or, with adaptive sampling, its grid
    needs more than ``MAX_GRID`` samples per bin along an axis. The grid
    checked is the very one :func:`roi_geometry` gives the loops. Rows are
    named from ``first_row`` (a caller checking one row of its own passes its number).
    """
    for k in _rows_to_check(rois, pooled, spatial_scale, sampling_ratio):
        roi = rois[k].tolist()
        g = roi_geometry(roi[1:], pooled, spatial_scale, 1, aligned)
        if not all(math.isfinite(v) for v in (g.start_h, g.start_w, g.roi_h, g.roi_w)):
            raise ValueError(
                f"boxes row {first_row + k} ({roi}) times spatial_scale {spatial_scale} overflows float64"
            )
        if sampling_ratio <= 0:
            grid = max(sampling_grid(g.roi_h, pooled[0], 0), sampling_grid(g.roi_w, pooled[1], 0))
            if grid > MAX_GRID:
                raise ValueError(
                    f"boxes row {first_row + k} ({roi}) needs an adaptive sampling grid of {grid} samples per "
                    f"axis (limit {MAX_GRID}); pass a fixed sampling_ratio or a smaller box"
                )


def _rows_to_check(rois: Tensor, pooled: Tuple[int, int], spatial_scale: float, sampling_ratio: int) -> List[int]:
    """The rows :func:`check_geometry` must look at one by one: all but those a crude bound clears.

    ``|roi_w| <= (|x1| + |x2|) * spatial_scale + 1`` (the aligned offset is
    0.5 on each end; legacy boxes are at least 1 wide), likewise ``roi_h``; a
    row whose bounds stay far below overflow and, when adaptive, below
    ``MAX_GRID / 2`` samples per bin (room for any rounding) passes for sure.
    The bound only saves time on many rows (the runtimes' adapters run this
    on every call the benchmarks time); whatever it does not clear is checked exactly.
    """
    scaled = rois[:, 1:].abs() * spatial_scale  # |x1|, |y1|, |x2|, |y2| times the scale
    width = scaled[:, 0] + scaled[:, 2] + 1
    height = scaled[:, 1] + scaled[:, 3] + 1
    cleared = (width < 1e300) & (height < 1e300)  # also False for NaN
    if sampling_ratio <= 0:
        cleared &= (width / pooled[1] < MAX_GRID / 2) & (height / pooled[0] < MAX_GRID / 2)
    return (~cleared).nonzero().flatten().tolist()


def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Reference RoIAlign with ``torchvision.ops.roi_align``'s contract.

    ``input`` float16, bfloat16, float32 or float64 ``[N, C, H, W]``; ``boxes``
    of its dtype and device (see :mod:`reference.inputs` for every check).
    Zero sizes: K = 0 or C = 0 give an empty ``[K, C, h, w]``; H = 0 or W = 0
    give zeros (no pixel to sample); N = 0 admits only K = 0. The gradient
    always has the input's shape (zeros where no sample reads a pixel).
    Computes in float64 whatever the input dtype and returns ``[K, C, h, w]``
    in the input's dtype and device; differentiable with respect to ``input``.
    """
    args = inputs.roi_align_args(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    check_geometry(args.rois, args.output_size, args.spatial_scale, args.sampling_ratio, args.aligned)
    return _ReferenceRoIAlign.apply(
        input, args.rois, args.output_size, args.spatial_scale, args.sampling_ratio, args.aligned
    )


class RoIAlign(nn.Module):
    """Module form of the reference :func:`roi_align`: ``torchvision.ops.RoIAlign``'s constructor and call."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        # Kept as given, checked on each call (as torchvision).
        self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned = (
            output_size, spatial_scale, sampling_ratio, aligned
        )

    def forward(self, input: Tensor, rois: BoxesArg) -> Tensor:
        """``roi_align(input, rois, ...)`` with this module's parameters."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )
