"""Numba RoIAlign kernels: two forwards (on channels-last maps, and straight from NCHW planes) and the backward.

Layout contract: features are up to :data:`MAX_LEVELS` pyramid levels, each
``[N, H_l, W_l, C]`` (C innermost, same N and C; :func:`roi_align_forward_nchw`
takes them ``[N, C, H_l, W_l]`` with any strides); RoIs are a float64
``[K, 5]`` array whose batch indices are already checked to be integers in
``[0, N)`` and whose coordinates are finite; ``levels[k]`` is the level RoI
``k`` is pooled from at ``scales[levels[k]]``, or negative to skip the RoI
(its output row and gradient are left untouched). A single-level RoIAlign is
the same kernel with every RoI on level 0, so one pass serves a whole
multi-level pooler: no Python loop over levels and no scatter of the rows. Sample coordinates
and bilinear weights are computed once per RoI in float64 (:func:`_sample_taps`)
and shared by every channel. On NHWC maps the channel loop is contiguous, so
it vectorises; the NCHW forward instead walks each channel's plane, with no
copy of the map, and sums every element in the same order and precision, so
the two forwards agree bit for bit (``impl/cost_model.py`` picks one per
level).

Storage: a map, output or gradient array holds float32 or float64 values,
or the bits of float16 or bfloat16 ones (Numba has no float16 on the CPU and
numpy no bfloat16): an int16 array holds float16 bits, a uint16 array
bfloat16 bits (``impl/storage.py`` makes these views). The kernels specialise
on the array dtype when compiled, so one source serves every storage:
:func:`_convert` decodes a stored half to float32 as it is read and rounds a
float32 to the half (to nearest, ties to even) as it is written. Sums are
float64 for float32 and float64 maps (forward), float32 for the halves (the
float64 weights rounded to float32).

The edge rules are torchvision's (see ``reference/roi_align.py``, which
writes them out one by one). Every pixel index is clamped into the map
before it is used, so no input can make a kernel read or write out of bounds.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# Level maps passed to one kernel call (enough for FPN's P2-P5 poolers);
# unused slots repeat level 0. Deeper pyramids take one call per group of
# four levels.
MAX_LEVELS = 4


# --- storage conversions ------------------------------------------------------------
# Integer work in Numba code is in int64 (Numba widens small integers anyway;
# signed, so no mixed-sign promotion to float64), narrowed to uint32 for the
# bitcasts. The float arithmetic produces no float32 subnormal and takes one
# only where it rounds to a zero half anyway, so flush-to-zero modes
# (torch.set_flush_denormal, set per thread) change no result.


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the uint32 ``bits``."""
    if bits != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_float32(typingctx, value):
    """The bit pattern of the float32 ``value``, as uint32."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _prefetch(typingctx, plane, y, x):
    """Ask the cache for the line holding ``plane[y, x]`` (a 2-D array) ahead of its read; no effect on results."""
    if not (isinstance(plane, types.Array) and plane.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1], args[2]])
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read, keep in all cache levels, data cache
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(plane, y, x), codegen


@intrinsic
def _float16_to_float32(typingctx, bits):
    """float16 bits (int16 or uint16) -> the float32 of the same value (exact; NaN stays NaN).

    Written in LLVM IR so it runs in 32-bit lanes: in Numba's own 64-bit
    integer arithmetic the forward's channel loop vectorises half as wide
    (3x slower per element).
    """
    if bits not in (types.int16, types.uint16):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)

        def const(value):
            return ir.Constant(i32, value)

        h = builder.zext(args[0], i32)
        sign = builder.shl(builder.and_(h, const(0x8000)), const(16))
        magnitude = builder.and_(h, const(0x7FFF))
        # Normal, inf and NaN: exponent and mantissa move up 13 bits; the
        # exponent bias goes from 15 to 127 (+112), inf/NaN's 31 to 255 (+224).
        special = builder.icmp_unsigned(">=", magnitude, const(0x7C00))
        rebias = builder.select(special, const(224 << 23), const(112 << 23))
        normal = builder.add(builder.shl(magnitude, const(13)), rebias)
        # Zero and subnormal: magnitude * 2**-24, exact and a normal float32
        # (so flush-to-zero modes cannot change it).
        scaled = builder.fmul(builder.uitofp(magnitude, ir.FloatType()), ir.Constant(ir.FloatType(), 2.0**-24))
        tiny = builder.bitcast(scaled, i32)
        is_normal = builder.icmp_unsigned(">=", magnitude, const(0x0400))
        return builder.bitcast(builder.or_(sign, builder.select(is_normal, normal, tiny)), ir.FloatType())

    return types.float32(bits), codegen


@njit(cache=True, inline="always")
def _bfloat16_to_float32(bits):
    """bfloat16 bits (int16 or uint16) -> the float32 of the same value: the bits become its high half."""
    return _float32_from_bits(np.uint32((np.int64(bits) & 0xFFFF) << 16))


@njit(cache=True, inline="always")
def _float32_to_float16(value):
    """float32 -> float16 bits (int16), rounded to nearest, ties to even; overflow -> inf, NaN -> NaN."""
    bits = np.int64(_bits_of_float32(value))
    sign = (bits >> 16) & 0x8000
    magnitude = bits & 0x7FFFFFFF
    # Normal results: drop 13 mantissa bits with round to nearest even (a
    # carry ripples into the exponent), rebias the exponent by -112.
    normal = (magnitude + 0xFFF + ((magnitude >> 13) & 1) - (112 << 23)) >> 13
    # Below 2**-14 (subnormal results): adding 0.5 makes the float32 adder
    # round to a multiple of 2**-24, which lands in the low bits.
    tiny = np.int64(_bits_of_float32(_float32_from_bits(np.uint32(magnitude)) + np.float32(0.5))) - 0x3F000000
    if magnitude > 0x7F800000:
        half = 0x7E00 | ((magnitude >> 13) & 0x1FF)  # quiet NaN
    elif magnitude >= 0x477FF000:  # 65520 and up round to inf
        half = 0x7C00
    elif magnitude >= 0x38800000:
        half = normal
    else:
        half = tiny
    return np.int16(sign | half)  # the low 16 bits


@njit(cache=True, inline="always")
def _float32_to_bfloat16(value):
    """float32 -> bfloat16 bits (uint16), rounded to nearest, ties to even; overflow -> inf, NaN -> NaN."""
    bits = np.int64(_bits_of_float32(value))
    if (bits & 0x7FFFFFFF) > 0x7F800000:
        return np.uint16((bits >> 16) | 0x0040)  # quiet NaN
    return np.uint16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)


def _convert(value, like):
    """``value``, read from one array, as an element of the array ``like``.

    Between a float and half bits (int16: float16, uint16: bfloat16) it
    decodes to float32 or rounds a float32 to the half; between floats it is
    the value (the store casts it); between equal storages, the value.
    """


@overload(_convert)
def _convert_overload(value, like):
    target = like.dtype
    if value == target:
        return lambda value, like: value
    if isinstance(value, types.Float) and isinstance(target, types.Float):
        return lambda value, like: value
    if isinstance(target, types.Float):
        if value == types.int16:
            return lambda value, like: _float16_to_float32(value)
        if value == types.uint16:
            return lambda value, like: _bfloat16_to_float32(value)
    if value == types.float32:
        if target == types.int16:
            return lambda value, like: _float32_to_float16(value)
        if target == types.uint16:
            return lambda value, like: _float32_to_bfloat16(value)
    return None


def _sum_buffer(storage, size):
    """An uninitialised ``[size]`` buffer for sums of ``storage``'s values: float32 for half bits, else float64."""


@overload(_sum_buffer)
def _sum_buffer_overload(storage, size):
    if storage.dtype in (types.int16, types.uint16):
        return lambda storage, size: np.empty(size, np.float32)
    return lambda storage, size: np.empty(size, np.float64)


def _own_rows(grad, like):
    """``grad [N, H, W, C]``'s pixel rows ``[N * H, W, C]`` when it holds ``like``'s dtype
    (sums can accumulate in place), else no rows ``[0, W, C]``."""


@overload(_own_rows)
def _own_rows_overload(grad, like):
    if grad.dtype == like.dtype:
        return lambda grad, like: grad.reshape(grad.shape[0] * grad.shape[1], grad.shape[2], grad.shape[3])
    return lambda grad, like: np.zeros((0, grad.shape[2], grad.shape[3]), like.dtype)


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


@njit(cache=True)
def _sample_taps(start, bin_size, bins, grid, size):
    """The two bilinear taps of each of the ``bins * grid`` samples along one axis of ``size`` pixels.

    Sample ``p * grid + i`` sits at ``start + p * bin_size + (i + 0.5) *
    bin_size / grid``. Returns ``(pixels [n, 2] int64, weights [n, 2]
    float64)``: low and high pixel, each clamped into the map, and their
    weights, both 0 for a sample outside the map (it reads nothing). Both
    forward kernels take their taps from here, so they read the same pixels
    with the same weights.
    """
    samples = bins * max(grid, 0)  # an aligned inverted box's adaptive grid is <= 0: no samples
    pixels = np.empty((samples, 2), np.int64)
    weights = np.empty((samples, 2), np.float64)
    for p in range(bins):
        for i in range(grid):
            pos = start + p * bin_size + (i + 0.5) * bin_size / grid
            low, high, w_low, w_high = _axis_taps(pos, size)
            pixels[p * grid + i, 0] = low
            pixels[p * grid + i, 1] = high
            weights[p * grid + i, 0] = w_low
            weights[p * grid + i, 1] = w_high
    return pixels, weights


@njit(cache=True, inline="always")
def _roi_on_its_level(k, rois, levels, scales, map0, map1, map2, map3, height_axis, pooled_h, pooled_w,
                      sampling_ratio, aligned):
    """RoI ``k``'s level map and its samples there, as both forward kernels read them:
    ``(features, image, ys, wys, xs, wxs, grid_h, grid_w, count)`` (taps as :func:`_sample_taps`).
    ``height_axis`` is the maps' H axis (1 for NHWC, 2 for NCHW); W is the next."""
    level = levels[k]
    features = _level_map(level, map0, map1, map2, map3)
    spatial_scale = scales[level]
    roi = rois[k]
    b = np.int64(roi[0])
    start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _roi_geometry(
        roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned
    )
    ys, wys = _sample_taps(start_h, bin_h, pooled_h, grid_h, features.shape[height_axis])
    xs, wxs = _sample_taps(start_w, bin_w, pooled_w, grid_w, features.shape[height_axis + 1])
    return features, b, ys, wys, xs, wxs, grid_h, grid_w, count


# How many samples along a row the NHWC forward asks for its taps' channel
# vectors ahead of reading them (about 20% off the P2 box head: a large RoI's
# taps are far apart, so the hardware prefetcher cannot guess the next one).
PREFETCH_SAMPLES = 2


@njit(cache=True, inline="always")
def _prefetch_pixels(row, pixels):
    """Prefetch every line of the channel vectors ``row[pixels[0]]`` and ``row[pixels[1]]`` (``row``: [W, C])."""
    step = max(64 // row.itemsize, 1)
    for x in pixels:
        for c in range(0, row.shape[1], step):
            _prefetch(row, x, c)


@njit(cache=True, parallel=True)
def roi_align_forward_nhwc(
    map0, map1, map2, map3, scales, rois, levels, order, pooled_h, pooled_w, sampling_ratio, aligned, out
):
    """maps [N, H_l, W_l, C], scales [MAX_LEVELS], rois [K, 5] float64, levels [K] -> out [K, C, pooled_h, pooled_w].

    One work item per RoI; each sample reads its four taps' contiguous
    channel vectors. Only the RoIs listed in ``order`` are pooled, in that
    order (each RoI writes only its own row, so the order changes speed, not
    results): neighbouring RoIs then share cached feature rows, and threads
    split the listed RoIs only, not skipped ones.
    """
    channels = map0.shape[3]
    for i in prange(order.shape[0]):
        k = order[i]
        if levels[k] < 0:
            continue
        features, b, ys, wys, xs, wxs, grid_h, grid_w, count = _roi_on_its_level(
            k, rois, levels, scales, map0, map1, map2, map3, 1, pooled_h, pooled_w, sampling_ratio, aligned
        )
        acc = _sum_buffer(map0, channels)
        for ph in range(pooled_h):
            _pool_bin_row(acc, features[b], ys, wys, xs, wxs, grid_h, grid_w, count, ph, out[k], True)


@njit(cache=True, inline="always")
def _pool_bin_row(acc, image, ys, wys, xs, wxs, grid_h, grid_w, count, ph, out_row, prefetch):
    """Row ``ph`` of one RoI's bins from its NHWC ``image [H, W, C]`` into ``out_row [C, pooled_h, pooled_w]``;
    ``acc [C]`` is scratch in the sum dtype. Each bin sums its samples in order, each sample its four taps
    (:func:`_gather`), then divides by ``count``: the summation order every forward path keeps.
    ``prefetch`` (a constant at each call) asks for taps :data:`PREFETCH_SAMPLES` samples ahead."""
    for pw in range(out_row.shape[2]):
        acc[:] = 0.0
        for sy in range(ph * grid_h, (ph + 1) * grid_h):
            y0, y1, wy0, wy1 = ys[sy, 0], ys[sy, 1], wys[sy, 0], wys[sy, 1]
            if wy0 == 0.0 and wy1 == 0.0:
                continue
            for sx in range(pw * grid_w, (pw + 1) * grid_w):
                if prefetch and sx + PREFETCH_SAMPLES < xs.shape[0]:
                    ahead = xs[sx + PREFETCH_SAMPLES]
                    _prefetch_pixels(image[y0], ahead)
                    _prefetch_pixels(image[y1], ahead)
                x0, x1, wx0, wx1 = xs[sx, 0], xs[sx, 1], wxs[sx, 0], wxs[sx, 1]
                if wx0 == 0.0 and wx1 == 0.0:
                    continue
                w00 = wy0 * wx0
                w01 = wy0 * wx1
                w10 = wy1 * wx0
                w11 = wy1 * wx1
                _gather(acc, w00, image[y0, x0], w01, image[y0, x1], w10, image[y1, x0], w11, image[y1, x1])
        mean = acc.dtype.type(count)
        for c in range(acc.shape[0]):
            out_row[c, ph, pw] = _convert(acc[c] / mean, out_row)


# Channels per work item of the NCHW forward: enough items to share among
# threads with a handful of RoIs, few enough that each item's RoI geometry
# (recomputed per item) stays negligible. The block's channels are the
# innermost loop, so its sums are independent chains (a loop over samples
# within one channel is one chain of dependent additions: 20% slower).
NCHW_CHANNEL_BLOCK = 16
# How many samples along a row ahead the NCHW forward asks for its taps'
# cache lines in every channel of the block. A plane's taps are scattered
# lines of a map far larger than the caches, so without it every line is a
# full memory latency.
PREFETCH_SAMPLES_NCHW = 2


@njit(cache=True, parallel=True)
def roi_align_forward_nchw(
    map0, map1, map2, map3, scales, rois, levels, order, pooled_h, pooled_w, sampling_ratio, aligned, out
):
    """maps [N, C, H_l, W_l] (any strides), otherwise as :func:`roi_align_forward_nhwc`, with the same result
    bit for bit.

    Reads each sample's four taps straight from the channel planes: no
    layout conversion, so the cost follows the RoIs' samples, not the maps'
    size. One work item per RoI and block of :data:`NCHW_CHANNEL_BLOCK`
    channels; each output element is summed in the NHWC kernel's order and
    precision.
    """
    channels = map0.shape[1]
    blocks = -(-channels // NCHW_CHANNEL_BLOCK)
    for item in prange(order.shape[0] * blocks):
        k = order[item // blocks]
        if levels[k] < 0:
            continue
        features, b, ys, wys, xs, wxs, grid_h, grid_w, count = _roi_on_its_level(
            k, rois, levels, scales, map0, map1, map2, map3, 2, pooled_h, pooled_w, sampling_ratio, aligned
        )
        first = (item % blocks) * NCHW_CHANNEL_BLOCK
        last = min(first + NCHW_CHANNEL_BLOCK, channels)
        planes = features[b, first:last]
        acc = _sum_buffer(map0, last - first)
        mean = acc.dtype.type(count)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                acc[:] = 0.0
                for sy in range(ph * grid_h, (ph + 1) * grid_h):
                    y0, y1, wy0, wy1 = ys[sy, 0], ys[sy, 1], wys[sy, 0], wys[sy, 1]
                    if wy0 == 0.0 and wy1 == 0.0:
                        continue
                    for sx in range(pw * grid_w, (pw + 1) * grid_w):
                        x0, x1, wx0, wx1 = xs[sx, 0], xs[sx, 1], wxs[sx, 0], wxs[sx, 1]
                        if wx0 == 0.0 and wx1 == 0.0:
                            continue
                        if sx + PREFETCH_SAMPLES_NCHW < xs.shape[0]:
                            ahead = xs[sx + PREFETCH_SAMPLES_NCHW, 0]
                            for c in range(planes.shape[0]):
                                _prefetch(planes[c], y0, ahead)
                                _prefetch(planes[c], y1, ahead)
                        _gather_planes(acc, wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1, planes, y0, y1, x0, x1)
                for c in range(acc.shape[0]):
                    out[k, first + c, ph, pw] = _convert(acc[c] / mean, out)


@njit(cache=True, inline="always")
def _gather_planes(acc, w00, w01, w10, w11, planes, y0, y1, x0, x1):
    """acc[c] += the four taps' weighted values in plane ``planes[c]``, in acc's precision (weights rounded
    to it): :func:`_gather`'s sum, term for term, over a block of NCHW planes."""
    w00 = acc.dtype.type(w00)
    w01 = acc.dtype.type(w01)
    w10 = acc.dtype.type(w10)
    w11 = acc.dtype.type(w11)
    for c in range(acc.shape[0]):
        plane = planes[c]
        acc[c] += (w00 * _convert(plane[y0, x0], acc) + w01 * _convert(plane[y0, x1], acc)
                   + w10 * _convert(plane[y1, x0], acc) + w11 * _convert(plane[y1, x1], acc))


@njit(cache=True, inline="always")
def _gather(acc, w00, f00, w01, f01, w10, f10, w11, f11):
    """acc += the four taps' weighted values over the channels, in acc's precision (weights rounded to it)."""
    w00 = acc.dtype.type(w00)
    w01 = acc.dtype.type(w01)
    w10 = acc.dtype.type(w10)
    w11 = acc.dtype.type(w11)
    for c in range(acc.shape[0]):
        acc[c] += (w00 * _convert(f00[c], acc) + w01 * _convert(f01[c], acc)
                   + w10 * _convert(f10[c], acc) + w11 * _convert(f11[c], acc))


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
    ``to_nchw[l]``, else [N, H_l, W_l, C]. ``grad_out``'s dtype is the one
    sums are made in: the gradient's own, or float32 for half gradients.
    The pixel rows of all levels,
    ``(l, b, y)`` at ``row_starts[l] + b * H_l + y``, are split into
    ``bands`` disjoint bands. A band zeroes its rows (the result's own rows
    for an NHWC level holding the sum dtype, else a band-sized buffer),
    visits the RoIs in order adding only into its own rows, then copies the
    buffer's rows out (to NCHW, and to the half dtype rounding each sum once)
    while they are in cache. Every element is summed in the same order
    whatever the thread or band count: race-free and bitwise deterministic.
    Weights are computed in float64 and rounded once to the sum dtype.
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
            out = _level_map(slot, grad0, grad1, grad2, grad3)
            if to_nchw[slot] or _own_rows(out, grad_out).shape[0] == 0:
                rows = _level_map(slot, rows0, rows1, rows2, rows3)
                lo = max(row_lo, row_starts[slot])
                for row in range(lo, min(row_hi, row_starts[slot + 1])):
                    local = row - row_starts[slot]
                    if to_nchw[slot]:
                        _row_to_nchw(rows[row - lo], out, local // heights[slot], local % heights[slot])
                    else:
                        _row_to_nhwc_row(rows[row - lo], out[local // heights[slot], local % heights[slot]])


@njit(cache=True)
def _band_rows(slot, row_lo, row_hi, row_starts, widths, grad, to_nchw, like):
    """Zeroed rows ``[R, W, C]`` of ``like``'s dtype this band accumulates level ``slot`` into,
    and the global row of ``rows[0]``.

    The NHWC gradient ``grad``'s own rows when it holds ``like``'s dtype; a band-sized buffer otherwise.
    """
    lo = max(row_lo, row_starts[slot])
    hi = max(min(row_hi, row_starts[slot + 1]), lo)
    if not to_nchw[slot]:
        rows = _own_rows(grad, like)
        if rows.shape[0] > 0:
            rows[lo - row_starts[slot]:hi - row_starts[slot]] = 0.0
            return rows, row_starts[slot]
    return np.zeros((hi - lo, widths[slot], like.shape[3]), like.dtype), lo


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
                dst_row[x, c] = _convert(src[b, c, y, x], dst_row)


@njit(cache=True, inline="always")
def _row_to_nchw(src_row, dst, b, y):
    """dst[b, c, y, x] = src_row[x, c]: one NHWC row ``[W, C]`` into an NCHW row."""
    channels = src_row.shape[1]
    for c0 in range(0, channels, _CHANNEL_BLOCK):
        c1 = min(c0 + _CHANNEL_BLOCK, channels)
        for x in range(src_row.shape[0]):
            for c in range(c0, c1):
                dst[b, c, y, x] = _convert(src_row[x, c], dst)


@njit(cache=True)
def _row_to_nhwc_row(src_row, dst_row):
    """dst_row[x, c] = src_row[x, c], converted to dst_row's storage: two NHWC rows ``[W, C]``."""
    for x in range(src_row.shape[0]):
        for c in range(src_row.shape[1]):
            dst_row[x, c] = _convert(src_row[x, c], dst_row)


@njit(cache=True, parallel=True)
def nchw_to_nhwc(src, dst):
    """dst[n, y, x, c] = src[n, c, y, x], converted to dst's storage; src may have any strides."""
    n, _, height, _ = src.shape
    for row in prange(n * height):
        b = row // height
        y = row % height
        _row_to_nhwc(src, dst[b, y], b, y)


@njit(cache=True)
def convert(src, dst):
    """dst[i] = src[i] converted to dst's storage (half bits <-> float32, as the kernels convert): 1-D arrays."""
    for i in range(src.shape[0]):
        dst[i] = _convert(src[i], dst)
