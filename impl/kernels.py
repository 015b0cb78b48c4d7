"""Numba RoIAlign kernels on channels-last (NHWC) feature maps.

Layout contract: features are up to :data:`MAX_LEVELS` pyramid levels, each
``[N, H_l, W_l, C]`` (C innermost, same N and C); RoIs are a float64
``[K, 5]`` array whose batch indices are already checked to be integers in
``[0, N)`` and whose coordinates are finite; ``levels[k]`` is the level RoI
``k`` is pooled from at ``scales[levels[k]]``, or negative to skip the RoI
(its output row and gradient are left untouched). A single-level RoIAlign is
the same kernel with every RoI on level 0, so one pass serves a whole
multi-level pooler: no Python loop over levels and no scatter of the rows. Sample coordinates
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

# Level maps passed to one kernel call (enough for FPN's P2-P5 poolers);
# unused slots repeat level 0. Deeper pyramids take one call per group of
# four levels.
MAX_LEVELS = 4


@njit(cache=True, inline="always")
def _level_map(level, map0, map1, map2, map3):
    if level == 0:
        return map0
    if level == 1:
        return map1
    if level == 2:
        return map2
    return map3


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
def roi_align_forward_nhwc(
    map0, map1, map2, map3, scales, rois, levels, order, pooled_h, pooled_w, sampling_ratio, aligned, out
):
    """maps [N, H_l, W_l, C], scales [MAX_LEVELS], rois [K, 5] float64, levels [K] -> out [K, C, pooled_h, pooled_w].

    RoIs are visited in the order of the permutation ``order`` (each RoI
    writes only its own row, so the order changes speed, not results):
    neighbouring RoIs then share cached feature rows.
    """
    channels = map0.shape[3]
    for i in prange(rois.shape[0]):
        k = order[i]
        level = levels[k]
        if level < 0:
            continue
        features = _level_map(level, map0, map1, map2, map3)
        height = features.shape[1]
        width = features.shape[2]
        spatial_scale = scales[level]
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
def _scatter(dst, weight, src):
    """dst += weight * src over the channels; two arrays, so it vectorises."""
    w = dst.dtype.type(weight)
    for c in range(dst.shape[0]):
        dst[c] += w * src[c]


@njit(cache=True, parallel=True)
def roi_align_backward_nhwc(
    grad_out, rois, levels, scales, row_starts, heights, widths, bands,
    grad0, grad1, grad2, grad3, to_nchw, sampling_ratio, aligned,
):
    """grad_out [K, pooled_h, pooled_w, C] -> each level's whole input gradient ``grad_l``.

    ``grad_l`` (``heights[l]`` x ``widths[l]``) is [N, C, H_l, W_l] where
    ``to_nchw[l]``, else [N, H_l, W_l, C]. The pixel rows of all levels,
    ``(l, b, y)`` at ``row_starts[l] + b * H_l + y``, are split into
    ``bands`` disjoint bands. A band zeroes its rows (a band-sized buffer for
    an NCHW level, the result's own rows for NHWC), visits the RoIs in order
    adding only into its own rows, then copies the buffer's rows to NCHW while
    they are in cache. Every element is summed in the same order whatever the
    thread or band count: race-free and bitwise deterministic. Weights are
    computed in float64 and rounded once to the gradient's dtype.
    """
    total_rows = row_starts[MAX_LEVELS]
    for band in prange(bands):
        row_lo = band * total_rows // bands
        row_hi = (band + 1) * total_rows // bands
        rows0, first0 = _band_rows(0, row_lo, row_hi, row_starts, widths, grad0, to_nchw, grad_out)
        rows1, first1 = _band_rows(1, row_lo, row_hi, row_starts, widths, grad1, to_nchw, grad_out)
        rows2, first2 = _band_rows(2, row_lo, row_hi, row_starts, widths, grad2, to_nchw, grad_out)
        rows3, first3 = _band_rows(3, row_lo, row_hi, row_starts, widths, grad3, to_nchw, grad_out)
        _accumulate_band(grad_out, rois, levels, scales, row_starts, heights, widths, row_lo, row_hi,
                         rows0, rows1, rows2, rows3, first0, first1, first2, first3, sampling_ratio, aligned)
        for slot in range(MAX_LEVELS):
            if to_nchw[slot]:
                rows = _level_map(slot, rows0, rows1, rows2, rows3)
                out = _level_map(slot, grad0, grad1, grad2, grad3)
                lo = max(row_lo, row_starts[slot])
                for row in range(lo, min(row_hi, row_starts[slot + 1])):
                    local = row - row_starts[slot]
                    _row_to_nchw(rows[row - lo], out, local // heights[slot], local % heights[slot])


@njit(cache=True)
def _band_rows(slot, row_lo, row_hi, row_starts, widths, grad, to_nchw, like):
    """Zeroed rows ``[R, W, C]`` this band accumulates level ``slot`` into, and the global row of ``rows[0]``.

    A band-sized buffer for an NCHW gradient; the NHWC gradient ``grad``'s own rows otherwise.
    """
    lo = max(row_lo, row_starts[slot])
    hi = max(min(row_hi, row_starts[slot + 1]), lo)
    if to_nchw[slot]:
        return np.zeros((hi - lo, widths[slot], like.shape[3]), like.dtype), lo
    rows = grad.reshape(grad.shape[0] * grad.shape[1], grad.shape[2], grad.shape[3])
    rows[lo - row_starts[slot]:hi - row_starts[slot]] = 0.0
    return rows, row_starts[slot]


@njit(cache=True)
def _accumulate_band(grad_out, rois, levels, scales, row_starts, heights, widths, row_lo, row_hi,
                     rows0, rows1, rows2, rows3, first0, first1, first2, first3, sampling_ratio, aligned):
    """Every RoI's taps that fall in global rows [row_lo, row_hi), in RoI order, into ``rows_l``."""
    pooled_h = grad_out.shape[1]
    pooled_w = grad_out.shape[2]
    for k in range(rois.shape[0]):
        level = levels[k]
        if level < 0:
            continue
        height = heights[level]
        width = widths[level]
        roi = rois[k]
        b = np.int64(roi[0])
        first_row = row_starts[level] + b * height
        if first_row + height <= row_lo or first_row >= row_hi:
            continue
        rows = _level_map(level, rows0, rows1, rows2, rows3)
        image_row = first_row - _level_map(level, first0, first1, first2, first3)
        start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry(
            roi, scales[level], pooled_h, pooled_w, sampling_ratio, aligned
        )
        for ph in range(pooled_h):
            for iy in range(grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                y0, y1, wy0, wy1 = _axis_taps(y, height)
                if wy0 == 0.0 and wy1 == 0.0:
                    continue
                in0 = row_lo <= first_row + y0 < row_hi
                in1 = row_lo <= first_row + y1 < row_hi
                if not (in0 or in1):
                    continue
                r0 = image_row + y0
                r1 = image_row + y1
                for pw in range(pooled_w):
                    g = grad_out[k, ph, pw]
                    for ix in range(grid_w):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        x0, x1, wx0, wx1 = _axis_taps(x, width)
                        if wx0 == 0.0 and wx1 == 0.0:
                            continue
                        # One loop per tap: two arrays per loop, so it
                        # vectorises even where clamped taps coincide.
                        if in0:
                            _scatter(rows[r0, x0], wy0 * wx0 / count, g)
                            _scatter(rows[r0, x1], wy0 * wx1 / count, g)
                        if in1:
                            _scatter(rows[r1, x0], wy1 * wx0 / count, g)
                            _scatter(rows[r1, x1], wy1 * wx1 / count, g)


# Channels per block in the layout conversions: each pixel's block is one
# 32-byte store, while eight source rows stream in (measured fastest of
# blocks 4 to 64 on a 256-channel P2 map).
_CHANNEL_BLOCK = 8


@njit(cache=True, inline="always")
def _row_to_nhwc(src, dst_row, b, y):
    """dst_row[x, c] = src[b, c, y, x]: one NCHW row into an NHWC row ``[W, C]``."""
    channels = src.shape[1]
    for c0 in range(0, channels, _CHANNEL_BLOCK):
        c1 = min(c0 + _CHANNEL_BLOCK, channels)
        for x in range(src.shape[3]):
            for c in range(c0, c1):
                dst_row[x, c] = src[b, c, y, x]


@njit(cache=True, inline="always")
def _row_to_nchw(src_row, dst, b, y):
    """dst[b, c, y, x] = src_row[x, c]: one NHWC row ``[W, C]`` into an NCHW row."""
    channels = src_row.shape[1]
    for c0 in range(0, channels, _CHANNEL_BLOCK):
        c1 = min(c0 + _CHANNEL_BLOCK, channels)
        for x in range(src_row.shape[0]):
            for c in range(c0, c1):
                dst[b, c, y, x] = src_row[x, c]


@njit(cache=True, parallel=True)
def nchw_to_nhwc(src, dst):
    """dst[n, y, x, c] = src[n, c, y, x]; src may have any strides."""
    n, _, height, _ = src.shape
    for row in prange(n * height):
        b = row // height
        y = row % height
        _row_to_nhwc(src, dst[b, y], b, y)
