"""Our RoIAlign as ``torch.library`` operators in the ``roialign_suite`` namespace.

The operators (``torch.ops.roialign_suite.*``):

- ``roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height,
  SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor``: torchvision's
  schema. ``input`` ``[N, C, H, W]``, ``rois`` ``[K, 5]`` of input's dtype; returns
  ``[K, C, pooled_height, pooled_width]`` contiguous.
- ``roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height,
  SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width,
  int sampling_ratio, bool aligned, bool channels_last) -> Tensor``: the gradient with
  respect to ``input``, channels_last when ``channels_last`` (so a channels_last map
  gets a channels_last gradient).
- ``multilevel_roi_align(Tensor[] features, Tensor rois, Tensor levels, float[] scales,
  SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor``:
  row ``k`` pooled from ``features[levels[k]]`` at ``scales[levels[k]]``, every level
  in one kernel pass (the pooler's call).
- ``multilevel_roi_align_backward(Tensor grad, Tensor rois, Tensor levels, float[] scales,
  SymInt batch_size, SymInt[] heights, SymInt[] widths, int sampling_ratio, bool aligned,
  bool[] channels_last) -> Tensor[]``: each level's gradient.
- ``fpn_levels(Tensor boxes, int k_min, int k_max, float canonical_scale, int canonical_level,
  float eps, str dialect, SymInt[] rows_per_image) -> Tensor``: the 0-based FPN level of
  each ``[K, 4]`` box (``impl.levels``), int64 ``[K]``, on any device; ``rows_per_image``
  (the sizes of the per-image lists the boxes were concatenated from, or empty) only
  lets an error name ``boxlists[i] row j``.

Each has a CPU kernel (Numba, ``impl.kernels``) and a fake (meta) kernel, so
``torch.compile(fullgraph=True)``, ``torch.export`` and ``FakeTensorMode`` see
shapes without running it. The forward operators have autograd registered on
the operator (the backward is the backward operator, whose own gradient is
the forward again: the map is linear) and a CPU autocast rule as torchvision's
(float16/bfloat16 run in float32 and return the input's dtype; float64 stays).
The four RoIAlign operators have vmap rules (one kernel call on the stacked
images and box sets); ``fpn_levels``, elementwise per box, takes vmap's
per-item fallback, which keeps its errors' row names.

Checks that need tensor data (finite coordinates, batch indices in range,
levels in range, an adaptive grid of bounded size) run inside the CPU kernel,
so they never break a graph and still name the offending row; checks of
shapes, dtypes and devices stay in the Python front ends (``impl.roi_align``).

Sizes: ``K = 0`` gives ``[0, C, h, w]``; ``C = 0`` gives ``[K, 0, h, w]``; a
level with ``H = 0`` or ``W = 0`` has no pixels, so its RoIs pool zeros (the
definition: every sample reads nothing); ``N = 0`` admits no RoI (a batch
index must be in ``[0, N)``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numba
import numpy as np
import torch
from torch import Tensor

from roialign_suite.impl import cost_model, kernels
from roialign_suite.impl.threads import kernel_threads
from roialign_suite.impl.inputs import check_roi_values, check_spatial_scale, samples_per_roi
from roialign_suite.impl.levels import check_finite_boxes, get_dialect, level_formula
from roialign_suite.impl.storage import kernel_array, new_tensor, nhwc

NAMESPACE = "roialign_suite"
_lib = torch.library.Library(NAMESPACE, "DEF")
_lib.define(
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor"
)
_lib.define(
    "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned, "
    "bool channels_last) -> Tensor"
)
_lib.define(
    "multilevel_roi_align(Tensor[] features, Tensor rois, Tensor levels, float[] scales, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
)
_lib.define(
    "fpn_levels(Tensor boxes, int k_min, int k_max, float canonical_scale, int canonical_level, float eps, "
    "str dialect, SymInt[] rows_per_image) -> Tensor"
)
_lib.define(
    "multilevel_roi_align_backward(Tensor grad, Tensor rois, Tensor levels, float[] scales, SymInt batch_size, "
    "SymInt[] heights, SymInt[] widths, int sampling_ratio, bool aligned, bool[] channels_last) -> Tensor[]"
)

# The operators, as called from Python (and TorchScript: torch.ops.roialign_suite.<name>).
ops = torch.ops.roialign_suite


# --- plumbing between tensors and the Numba kernels ------------------------------

def is_channels_last(t: Tensor) -> bool:
    """Whether ``[N, C, H, W]`` ``t`` is stored channels-last and not (also) contiguous."""
    return (not t.is_contiguous()) and t.is_contiguous(memory_format=torch.channels_last)


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


def _checked(rois: Tensor, levels: Tensor, shapes: Sequence[Sequence[int]], scales: Sequence[float],
             pooled, sampling_ratio: int, aligned: bool):
    """``(rois64, levels64)`` as the kernels take them, after every check that needs the data.

    Raises ``ValueError`` naming the first offending row. RoIs on a level
    without pixels (``H = 0`` or ``W = 0``) get level -1: the kernels skip
    them and their output stays zero.
    """
    if len(shapes) != len(scales):
        raise ValueError(f"{len(shapes)} feature maps but {len(scales)} scales")
    for scale in scales:
        check_spatial_scale(scale)
    for side in pooled:
        if side <= 0:
            raise ValueError(f"output_size must be positive, got {tuple(pooled)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape [K, 5], got shape {list(rois.shape)}")
    if levels.dtype != torch.int64 or levels.shape != (rois.shape[0],):
        raise ValueError(f"levels must be int64 of shape [{rois.shape[0]}], got {levels.dtype} {list(levels.shape)}")
    rois64 = rois.detach().to(torch.float64).contiguous().numpy()
    levels64 = levels.detach().contiguous().numpy()
    num_images = shapes[0][0] if shapes else 0
    check_roi_values(rois64, levels64, num_images, len(shapes), scales, pooled, sampling_ratio, aligned)
    empty = np.array([shape[2] == 0 or shape[3] == 0 for shape in shapes], dtype=bool)
    if rois64.shape[0] and empty[levels64].any():
        levels64 = np.where(empty[levels64], -1, levels64)
    return rois64, levels64


def levels_to_convert(features: Sequence[Tensor], rois64: np.ndarray, levels64: np.ndarray,
                      scales: Sequence[float], pooled, sampling_ratio: int, aligned: bool) -> np.ndarray:
    """Per level, whether the forward pools it from a channels-last copy (else straight from NCHW).

    The choice of :func:`impl.cost_model.convert_levels` for the level's
    bytes and taps (its RoIs' samples times channels). ``rois64`` ``[K, 5]``
    float64, ``levels64`` ``[K]`` (negative: skipped). Also what
    ``benchmarks/traffic.py`` reports as each level's path.
    """
    taking_part = levels64 >= 0
    samples = samples_per_roi(rois64[taking_part], levels64[taking_part], scales, pooled, sampling_ratio, aligned)
    taps = np.bincount(levels64[taking_part], weights=samples, minlength=len(features)) * features[0].shape[1]
    return cost_model.convert_levels([f.numel() * f.element_size() for f in features], taps,
                                     [is_channels_last(f) for f in features])


# --- CPU kernels ---------------------------------------------------------------------

def _pool(features: Sequence[Tensor], rois: Tensor, levels: Tensor, scales: Sequence[float],
          pooled_height: int, pooled_width: int, sampling_ratio: int, aligned: bool) -> Tensor:
    """The forward on CPU tensors: ``[K, C, pooled_height, pooled_width]``."""
    if not features:
        raise ValueError("features must hold at least one [N, C, H, W] map")
    pooled = (int(pooled_height), int(pooled_width))
    shapes = [tuple(f.shape) for f in features]
    rois64, levels64 = _checked(rois, levels, shapes, scales, pooled, sampling_ratio, aligned)
    k, c = rois64.shape[0], features[0].shape[1]
    skipped = bool((levels64 < 0).any())
    out = new_tensor((k, c) + pooled, features[0].dtype, zeros=skipped)
    if out.numel() == 0 or (skipped and not (levels64 >= 0).any()):
        return out
    convert = levels_to_convert(features, rois64, levels64, scales, pooled, sampling_ratio, aligned)
    order = _locality_order(rois64, levels64)
    # Work items handed out a few at a time, so RoIs of unequal cost (sizes, adaptive grids) even out
    # over the threads: an NHWC item is a whole RoI, an NCHW one a block of its channels.
    paths = (
        (kernels.roi_align_forward_nhwc, convert, nhwc, 1),  # contiguous channel vectors (a copy unless channels_last)
        (kernels.roi_align_forward_nchw, ~convert, lambda f, slot: kernel_array(f), 4),  # the planes as they are
    )
    with kernel_threads():  # every parallel kernel, the layout conversions included
        for kernel, takes, as_map, chunk in paths:
            path_levels = np.where(takes[np.maximum(levels64, 0)], levels64, -1)
            used = np.bincount(path_levels[path_levels >= 0], minlength=len(features)) > 0
            if not used.any():
                continue
            rows = [shape[0] * shape[2] if used[slot] else None for slot, shape in enumerate(shapes)]
            maps = [as_map(f, slot) if used[slot] else None for slot, f in enumerate(features)]
            for slots, group_scales, group_levels, _ in _level_groups(rows, scales, path_levels):
                # Only this call's RoIs, so its threads share real work.
                listed = order[group_levels[order] >= 0]
                with numba.parallel_chunksize(chunk):
                    kernel(*[maps[i] for i in slots], group_scales, rois64, group_levels, listed, pooled[0],
                           pooled[1], sampling_ratio, aligned, kernel_array(out))
    return out


def _pool_backward(grad: Tensor, rois: Tensor, levels: Tensor, scales: Sequence[float], batch_size: int,
                   heights: Sequence[int], widths: Sequence[int], sampling_ratio: int, aligned: bool,
                   channels_last: Sequence[bool]) -> List[Tensor]:
    """Each level's input gradient, ``[N, C, H_l, W_l]`` (channels_last where asked)."""
    if grad.dim() != 4 or grad.shape[0] != rois.shape[0]:
        raise ValueError(f"grad must have shape [{rois.shape[0]}, C, h, w], got shape {list(grad.shape)}")
    k, c, h, w = grad.shape
    shapes = [(batch_size, c, height, width) for height, width in zip(heights, widths)]
    rois64, levels64 = _checked(rois, levels, shapes, scales, (h, w), sampling_ratio, aligned)
    used = np.bincount(levels64[levels64 >= 0], minlength=len(shapes)) > 0
    dtype = grad.dtype
    # As the kernel writes each gradient: NHWC for a channels_last one, else NCHW;
    # a level without RoIs is zeros (calloc: free until touched).
    handed = [
        new_tensor((n, hl, wl, cl) if last else (n, cl, hl, wl), dtype, zeros=not (want and grad.numel()))
        for (n, cl, hl, wl), last, want in zip(shapes, channels_last, used)
    ]
    wanted = used & (grad.numel() > 0) & np.array([t.numel() > 0 for t in handed])
    if wanted.any():
        with kernel_threads() as threads:
            _scatter_back(grad, rois64, levels64, scales, shapes, channels_last, handed, wanted, threads,
                          sampling_ratio, aligned)
    return [t.permute(0, 3, 1, 2) if last else t for t, last in zip(handed, channels_last)]


def _scatter_back(grad, rois64, levels64, scales, shapes, channels_last, handed, wanted, threads, sampling_ratio,
                  aligned) -> None:
    """The backward kernel calls: ``handed[l]`` (NHWC if ``channels_last[l]``) receives level ``l``'s gradient."""
    grad_nhwc = nhwc(grad, "grad_output", sums=True)
    levels64 = np.where(wanted[np.maximum(levels64, 0)] & (levels64 >= 0), levels64, -1)
    rows = [shape[0] * shape[2] if want else None for shape, want in zip(shapes, wanted)]
    bands = _row_bands(threads, sum(t.numel() * grad_nhwc.itemsize for t, want in zip(handed, wanted) if want))
    for slots, group_scales, group_levels, row_starts in _level_groups(rows, scales, levels64):
        nchw = np.array([not channels_last[i] for i in slots])
        with numba.parallel_chunksize(1):
            kernels.roi_align_backward_nhwc(
                grad_nhwc, rois64, group_levels, group_scales, row_starts,
                np.array([shapes[i][2] for i in slots]), np.array([shapes[i][3] for i in slots]), bands,
                *[kernel_array(handed[i]) for i in slots], nchw, sampling_ratio, aligned,
            )


def _single_level(rois: Tensor) -> Tensor:
    return torch.zeros(rois.shape[0], dtype=torch.int64, device=rois.device)


@torch.library.impl(f"{NAMESPACE}::roi_align", "cpu")
def _roi_align_cpu(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    if rois.dtype != input.dtype:
        raise TypeError(f"rois dtype {rois.dtype} does not match input dtype {input.dtype}")
    return _pool([input], rois, _single_level(rois), [spatial_scale], pooled_height, pooled_width,
                 sampling_ratio, aligned)


@torch.library.impl(f"{NAMESPACE}::roi_align_backward", "cpu")
def _roi_align_backward_cpu(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                            height, width, sampling_ratio, aligned, channels_last):
    if grad.shape[1:] != (channels, pooled_height, pooled_width):
        raise ValueError(f"grad must have shape [K, {channels}, {pooled_height}, {pooled_width}], "
                         f"got shape {list(grad.shape)}")
    (result,) = _pool_backward(grad, rois, _single_level(rois), [spatial_scale], batch_size, [height], [width],
                               sampling_ratio, aligned, [channels_last])
    return result


@torch.library.impl(f"{NAMESPACE}::multilevel_roi_align", "cpu")
def _multilevel_roi_align_cpu(features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned):
    for i, feature in enumerate(features):
        if feature.dtype != features[0].dtype or feature.shape[:2] != features[0].shape[:2]:
            raise ValueError(f"features[{i}] ({list(feature.shape)}, {feature.dtype}) does not match "
                             f"features[0] ({list(features[0].shape)}, {features[0].dtype}) in N, C and dtype")
    return _pool(features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned)


@torch.library.impl(f"{NAMESPACE}::multilevel_roi_align_backward", "cpu")
def _multilevel_roi_align_backward_cpu(grad, rois, levels, scales, batch_size, heights, widths, sampling_ratio,
                                       aligned, channels_last):
    if not len(heights) == len(widths) == len(channels_last) == len(scales):
        raise ValueError("heights, widths, channels_last and scales must have one entry per level")
    return _pool_backward(grad, rois, levels, scales, batch_size, heights, widths, sampling_ratio, aligned,
                          channels_last)


def _fpn_levels(boxes, k_min, k_max, canonical_scale, canonical_level, eps, dialect, rows_per_image):
    check_finite_boxes(boxes, rows_per_image)
    return level_formula(boxes, k_min, k_max, canonical_scale, canonical_level, eps, get_dialect(dialect))


# Plain tensor arithmetic: one kernel for every device.
_lib.impl("fpn_levels", _fpn_levels, "CompositeExplicitAutograd")


# --- fake (meta) kernels: shapes, dtypes and strides only ----------------------------

def _empty(like: Tensor, shape, channels_last: bool = False) -> Tensor:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


@torch.library.register_fake(f"{NAMESPACE}::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    torch._check(rois.dtype == input.dtype, lambda: f"rois dtype {rois.dtype} does not match input dtype {input.dtype}")
    return _empty(input, (rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.register_fake(f"{NAMESPACE}::roi_align_backward")
def _roi_align_backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
                             width, sampling_ratio, aligned, channels_last):
    return _empty(grad, (batch_size, channels, height, width), channels_last)


@torch.library.register_fake(f"{NAMESPACE}::multilevel_roi_align")
def _multilevel_roi_align_fake(features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned):
    return _empty(features[0], (rois.shape[0], features[0].shape[1], pooled_height, pooled_width))


@torch.library.register_fake(f"{NAMESPACE}::multilevel_roi_align_backward")
def _multilevel_roi_align_backward_fake(grad, rois, levels, scales, batch_size, heights, widths, sampling_ratio,
                                        aligned, channels_last):
    return [_empty(grad, (batch_size, grad.shape[1], h, w), last)
            for h, w, last in zip(heights, widths, channels_last)]


@torch.library.register_fake(f"{NAMESPACE}::fpn_levels")
def _fpn_levels_fake(boxes, k_min, k_max, canonical_scale, canonical_level, eps, dialect, rows_per_image):
    return boxes.new_empty((boxes.shape[0],), dtype=torch.int64)


# --- autograd: the backward of each operator is another operator ----------------------

def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    ctx.shape = tuple(input.shape)
    ctx.channels_last = is_channels_last(input)


def _roi_align_grad(ctx, grad):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
    n, c, h, w = ctx.shape
    grad_input = ops.roi_align_backward(grad.contiguous(), rois, spatial_scale, pooled_height, pooled_width, n, c, h,
                                        w, sampling_ratio, aligned, ctx.channels_last)
    return grad_input, None, None, None, None, None, None


def _roi_align_backward_setup(ctx, inputs, output):
    grad, rois, spatial_scale, pooled_height, pooled_width, _, _, _, _, sampling_ratio, aligned, _ = inputs
    ctx.save_for_backward(rois)
    ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _roi_align_backward_grad(ctx, grad_grad_input):
    # The backward is linear in ``grad``; its adjoint is the forward.
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
    grad_grad = ops.roi_align(grad_grad_input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                              aligned)
    return (grad_grad,) + (None,) * 11


def _multilevel_setup(ctx, inputs, output):
    features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois, levels)
    ctx.params = (list(scales), pooled_height, pooled_width, sampling_ratio, aligned)
    ctx.batch_size = features[0].shape[0]
    ctx.heights = [f.shape[2] for f in features]
    ctx.widths = [f.shape[3] for f in features]
    ctx.channels_last = [is_channels_last(f) for f in features]


def _multilevel_grad(ctx, grad):
    rois, levels = ctx.saved_tensors
    scales, _, _, sampling_ratio, aligned = ctx.params
    grads = ops.multilevel_roi_align_backward(grad.contiguous(), rois, levels, scales, ctx.batch_size, ctx.heights,
                                              ctx.widths, sampling_ratio, aligned, ctx.channels_last)
    return list(grads), None, None, None, None, None, None, None


def _multilevel_backward_setup(ctx, inputs, output):
    grad, rois, levels, scales, _, _, _, sampling_ratio, aligned, _ = inputs
    ctx.save_for_backward(rois, levels)
    ctx.params = (list(scales), grad.shape[2], grad.shape[3], sampling_ratio, aligned)


def _multilevel_backward_grad(ctx, grad_grads):
    rois, levels = ctx.saved_tensors
    scales, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
    grad_grad = ops.multilevel_roi_align(list(grad_grads), rois, levels, scales, pooled_height, pooled_width,
                                         sampling_ratio, aligned)
    return (grad_grad,) + (None,) * 9


torch.library.register_autograd(f"{NAMESPACE}::roi_align", _roi_align_grad, setup_context=_roi_align_setup)
torch.library.register_autograd(f"{NAMESPACE}::roi_align_backward", _roi_align_backward_grad,
                                setup_context=_roi_align_backward_setup)
torch.library.register_autograd(f"{NAMESPACE}::multilevel_roi_align", _multilevel_grad,
                                setup_context=_multilevel_setup)
torch.library.register_autograd(f"{NAMESPACE}::multilevel_roi_align_backward", _multilevel_backward_grad,
                                setup_context=_multilevel_backward_setup)


# --- vmap: a batch of maps (and/or of box sets) is one call on the stacked images -----

def _batch_first(t: Tensor, bdim, batch: int) -> Tensor:
    """``t`` with its vmap dimension first; an unbatched ``t`` expanded to ``batch`` items."""
    return t.movedim(bdim, 0) if bdim is not None else t.expand(batch, *t.shape)


def _batched_rois(rois: Tensor, rois_bdim, batch: int, images_per_item: Optional[int]) -> Tensor:
    """``[B, K, 5]`` box sets -> ``[B * K, 5]``; with ``images_per_item``, item ``b``'s batch
    indices are shifted by ``b * images_per_item`` (its images in the stacked map)."""
    rois = _batch_first(rois, rois_bdim, batch)
    if images_per_item is not None:
        # Exact while b * N fits the dtype's integers (2**11 float16, 2**8 bfloat16).
        limit = round(2 / torch.finfo(rois.dtype).eps)
        if batch * images_per_item > limit:
            raise ValueError(f"vmap over {batch} x {images_per_item} images exceeds the integers "
                             f"{rois.dtype} batch indices can hold ({limit})")
        shift = torch.arange(batch, device=rois.device, dtype=rois.dtype).mul_(images_per_item)
        rois = torch.cat([rois[..., :1] + shift.view(batch, 1, 1), rois[..., 1:]], dim=-1)
    return rois.reshape(-1, 5)


def _stacked_maps(maps: Sequence[Tensor], bdims, batch: int):
    """``(maps, images_per_item)``: each ``[B, N, C, H, W]`` map as ``[B * N, C, H, W]`` (unbatched
    ones repeated); ``(maps, None)`` unchanged when none is batched."""
    if all(bdim is None for bdim in bdims):
        return list(maps), None
    stacked = [_batch_first(m, bdim, batch) for m, bdim in zip(maps, bdims)]
    return [m.flatten(0, 1) for m in stacked], stacked[0].shape[1]


@torch.library.register_vmap(f"{NAMESPACE}::roi_align")
def _roi_align_vmap(info, in_dims, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    batch = info.batch_size
    (input,), images = _stacked_maps([input], in_dims[:1], batch)
    flat = _batched_rois(rois, in_dims[1], batch, images)
    out = ops.roi_align(input, flat, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    return out.view(batch, -1, *out.shape[1:]), 0


@torch.library.register_vmap(f"{NAMESPACE}::roi_align_backward")
def _roi_align_backward_vmap(info, in_dims, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size,
                             channels, height, width, sampling_ratio, aligned, channels_last):
    batch = info.batch_size
    grad = _batch_first(grad, in_dims[0], batch)
    flat = _batched_rois(rois, in_dims[1], batch, batch_size)
    out = ops.roi_align_backward(grad.reshape(-1, *grad.shape[2:]), flat, spatial_scale, pooled_height, pooled_width,
                                 batch * batch_size, channels, height, width, sampling_ratio, aligned, channels_last)
    return out.view(batch, batch_size, *out.shape[1:]), 0


@torch.library.register_vmap(f"{NAMESPACE}::multilevel_roi_align")
def _multilevel_roi_align_vmap(info, in_dims, features, rois, levels, scales, pooled_height, pooled_width,
                               sampling_ratio, aligned):
    batch = info.batch_size
    features, images = _stacked_maps(features, in_dims[0], batch)
    flat = _batched_rois(rois, in_dims[1], batch, images)
    levels = _batch_first(levels, in_dims[2], batch).reshape(-1)
    out = ops.multilevel_roi_align(features, flat, levels, scales, pooled_height, pooled_width, sampling_ratio,
                                   aligned)
    return out.view(batch, -1, *out.shape[1:]), 0


@torch.library.register_vmap(f"{NAMESPACE}::multilevel_roi_align_backward")
def _multilevel_roi_align_backward_vmap(info, in_dims, grad, rois, levels, scales, batch_size, heights, widths,
                                        sampling_ratio, aligned, channels_last):
    batch = info.batch_size
    grad = _batch_first(grad, in_dims[0], batch)
    flat = _batched_rois(rois, in_dims[1], batch, batch_size)
    levels = _batch_first(levels, in_dims[2], batch).reshape(-1)
    outs = ops.multilevel_roi_align_backward(grad.reshape(-1, *grad.shape[2:]), flat, levels, scales,
                                             batch * batch_size, heights, widths, sampling_ratio, aligned,
                                             channels_last)
    return [out.view(batch, batch_size, *out.shape[1:]) for out in outs], [0] * len(outs)


# --- autocast (CPU): as torchvision's, run in float32 and return the input's dtype ----

def _autocast_float(t: Tensor) -> Tensor:
    """A tensor as autocast's ``cached_cast(float32)`` hands it on: float16 and bfloat16 (any
    floating dtype but float64) become float32; float64 stays float64, as torchvision's
    rule leaves it (autocast never lowers a double)."""
    return t.float() if t.is_floating_point() and t.dtype != torch.float64 else t


def _roi_align_autocast(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    with torch.autocast("cpu", enabled=False):
        out = ops.roi_align(_autocast_float(input), _autocast_float(rois), spatial_scale, pooled_height,
                            pooled_width, sampling_ratio, aligned)
    return out.to(input.dtype)


def _multilevel_roi_align_autocast(features, rois, levels, scales, pooled_height, pooled_width, sampling_ratio,
                                   aligned):
    with torch.autocast("cpu", enabled=False):
        out = ops.multilevel_roi_align([_autocast_float(f) for f in features], _autocast_float(rois), levels,
                                       scales, pooled_height, pooled_width, sampling_ratio, aligned)
    return out.to(features[0].dtype)


_lib.impl("roi_align", _roi_align_autocast, "AutocastCPU")
_lib.impl("multilevel_roi_align", _multilevel_roi_align_autocast, "AutocastCPU")
