"""Numba RoIAlign kernels on channels-last (NHWC) feature maps.

Layout contract: features are ``[N, H, W, C]`` (C innermost), RoIs are a
float64 ``[K, 5]`` array whose batch indices are already checked to be
integers in ``[0, N)`` and whose coordinates are finite. Sample coordinates
and bilinear weights are computed once per sample in float64 and shared by
every channel; the channel loop is contiguous, so it vectorises.

The edge rules are torchvision's (see ``reference/roi_align.py``, which
writes them out one by one). Every pixel index is clamped into the map
before it is used, so no input can make a kernel read or write out of bounds.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

@njit(cache=True, inline="always")
def _roi_geometry(roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned):
    offset = 0.5 if aligned else 0.0
    start_w = roi[1] * spatial_scale - offset
    start_h = roi[2] * spatial_scale - offset
    roi_w = roi[3] * spatial_scale - offset - start_w
    roi_h = roi[4] * spatial_scale - offset - start_h
    if not aligned:
        roi_w = max(roi_w, 1.0)
        roi_h = max(roi_h, 1.0)
    if sampling_ratio > 0:
        grid_h = sampling_ratio
        grid_w = sampling_ratio
    else:
        grid_h = np.int64(math.ceil(roi_h / pooled_h))
        grid_w = np.int64(math.ceil(roi_w / pooled_w))
    count = max(grid_h * grid_w, 1)
    return start_h, start_w, roi_h / pooled_h, roi_w / pooled_w, grid_h, grid_w, count


@njit(cache=True, inline="always")
def _axis_taps(pos, size):
    """(low, high, weight_low, weight_high) of one axis; weights 0 if outside."""
    if pos < -1.0 or pos > size:
        return 0, 0, 0.0, 0.0
    if pos <= 0.0:
        pos = 0.0
    low = np.int64(pos)
    if low >= size - 1:
        low = size - 1
        high = size - 1
        pos = float(low)
    else:
        high = low + 1
    frac = pos - low
    return low, high, 1.0 - frac, frac


@njit(cache=True, parallel=True)
def roi_align_forward_nhwc(features, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned, out):
    """features [N, H, W, C], rois [K, 5] float64 -> out [K, C, pooled_h, pooled_w]."""
    height = features.shape[1]
    width = features.shape[2]
    channels = features.shape[3]
    for k in prange(rois.shape[0]):
        roi = rois[k]
        b = np.int64(roi[0])
        start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry(
            roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned
        )
        acc = np.empty(channels, dtype=np.float64)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                acc[:] = 0.0
                for iy in range(grid_h):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    y0, y1, wy0, wy1 = _axis_taps(y, height)
                    if wy0 == 0.0 and wy1 == 0.0:
                        continue
                    for ix in range(grid_w):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        x0, x1, wx0, wx1 = _axis_taps(x, width)
                        if wx0 == 0.0 and wx1 == 0.0:
                            continue
                        w00 = wy0 * wx0
                        w01 = wy0 * wx1
                        w10 = wy1 * wx0
                        w11 = wy1 * wx1
                        f00 = features[b, y0, x0]
                        f01 = features[b, y0, x1]
                        f10 = features[b, y1, x0]
                        f11 = features[b, y1, x1]
                        for c in range(channels):
                            acc[c] += w00 * f00[c] + w01 * f01[c] + w10 * f10[c] + w11 * f11[c]
                for c in range(channels):
                    out[k, c, ph, pw] = acc[c] / count


@njit(cache=True, inline="always")
def _scatter(dst, weight, src, c_lo, c_hi):
    """dst[c] += weight * src[c] for c in [c_lo, c_hi); two arrays, so it vectorises."""
    w = dst.dtype.type(weight)
    for c in range(c_lo, c_hi):
        dst[c] += w * src[c]


@njit(cache=True, parallel=True)
def roi_align_backward_nhwc(
    grad_out, rois, spatial_scale, sampling_ratio, aligned, channel_block, grad_features
):
    """grad_out [K, pooled_h, pooled_w, C] -> grad_features [N, H, W, C] (accumulated into).

    Threads own disjoint channel blocks and each visits RoIs in order, so every
    element is summed in the same order whatever the thread count or block
    size: the result is race-free and bitwise deterministic. Weights are
    computed in float64 and rounded once to the gradient's dtype.
    """
    pooled_h = grad_out.shape[1]
    pooled_w = grad_out.shape[2]
    height = grad_features.shape[1]
    width = grad_features.shape[2]
    channels = grad_features.shape[3]
    num_blocks = (channels + channel_block - 1) // channel_block
    for blk in prange(num_blocks):
        c_lo = blk * channel_block
        c_hi = min(c_lo + channel_block, channels)
        for k in range(rois.shape[0]):
            roi = rois[k]
            b = np.int64(roi[0])
            start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry(
                roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned
            )
            for ph in range(pooled_h):
                for iy in range(grid_h):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    y0, y1, wy0, wy1 = _axis_taps(y, height)
                    if wy0 == 0.0 and wy1 == 0.0:
                        continue
                    for pw in range(pooled_w):
                        g = grad_out[k, ph, pw]
                        for ix in range(grid_w):
                            x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            x0, x1, wx0, wx1 = _axis_taps(x, width)
                            if wx0 == 0.0 and wx1 == 0.0:
                                continue
                            # One loop per tap: two arrays per loop, so it
                            # vectorises even where clamped taps coincide.
                            _scatter(grad_features[b, y0, x0], wy0 * wx0 / count, g, c_lo, c_hi)
                            _scatter(grad_features[b, y0, x1], wy0 * wx1 / count, g, c_lo, c_hi)
                            _scatter(grad_features[b, y1, x0], wy1 * wx0 / count, g, c_lo, c_hi)
                            _scatter(grad_features[b, y1, x1], wy1 * wx1 / count, g, c_lo, c_hi)


# Pixels per tile in the layout conversions: a tile of every channel of 64
# pixels (64 KiB at C = 256) stays in L2 while it is transposed.
_TILE = 64


@njit(cache=True, parallel=True)
def nchw_to_nhwc(src, dst):
    """dst[n, y, x, c] = src[n, c, y, x]; src may have any strides."""
    n, channels, height, width = src.shape
    for row in prange(n * height):
        b = row // height
        y = row % height
        for x0 in range(0, width, _TILE):
            x1 = min(x0 + _TILE, width)
            for c in range(channels):
                for x in range(x0, x1):
                    dst[b, y, x, c] = src[b, c, y, x]


@njit(cache=True, parallel=True)
def nhwc_to_nchw(src, dst):
    """dst[n, c, y, x] = src[n, y, x, c]."""
    n, height, width, channels = src.shape
    for row in prange(n * height):
        b = row // height
        y = row % height
        for x0 in range(0, width, _TILE):
            x1 = min(x0 + _TILE, width)
            for c in range(channels):
                for x in range(x0, x1):
                    dst[b, c, y, x] = src[b, y, x, c]
