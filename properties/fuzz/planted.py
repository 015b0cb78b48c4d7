"""Deliberately broken RoIAligns: an edge-case bug for the fuzzer, crashes and a hang for the isolation.

``roi_align`` is our kernel (``impl.roi_align``) except that every output bin
with a sample lying exactly on the last feature row (``y == H - 1`` in
feature pixels, the reference's float64 sample coordinates) comes out 0, as
if a kernel tested ``y >= H - 1`` where it means ``y > H``. Only boxes that
put a sample on that line show it; everything else is exact. Used by
``tests/test_fuzz.py``::

    python -m roialign_suite.properties.fuzz --target roialign_suite.properties.fuzz.planted:roi_align --minutes 2
"""
from __future__ import annotations

import ctypes
import threading

import torch
import torchvision
from torch import Tensor

from roialign_suite import impl
from roialign_suite.impl.inputs import BoxesArg, output_size_pair, rois_from_boxes
from roialign_suite.reference.roi_align import roi_geometry, sample_points


def bins_with_a_sample_on_the_last_row(rois: Tensor, height: int, pooled, spatial_scale: float,
                                       sampling_ratio: int, aligned: bool) -> Tensor:
    """``bool[K, 1, ph, pw]``: bins having a sample at exactly ``y == height - 1``."""
    hit = torch.zeros((rois.shape[0], 1) + tuple(pooled), dtype=torch.bool)
    for k, roi in enumerate(rois.tolist()):
        geometry = roi_geometry(roi[1:], pooled, spatial_scale, sampling_ratio, aligned)
        for ph, pw, y, _ in sample_points(geometry, pooled):
            if y == height - 1:
                hit[k, 0, ph, pw] = True
    return hit


def roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """``impl.roi_align`` with the planted bug (see the module docstring)."""
    out = impl.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    rois = rois_from_boxes(boxes, input)
    hit = bins_with_a_sample_on_the_last_row(rois, input.shape[2], output_size_pair(output_size), spatial_scale,
                                             sampling_ratio, aligned)
    return out.masked_fill(hit, 0.0)


def crashing_roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
                       sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """``impl.roi_align``, except that a box on a map without pixels (H = 0 or W = 0) kills the
    process with SIGSEGV (it reads address 0), as torchvision's CPU kernel does. Used by
    ``tests/test_crash_isolation.py``::

        python -m pytest -p roialign_suite.pytest_plugin properties/test_operator_contract.py \\
            --roialign-target=roialign_suite.properties.fuzz.planted:crashing_roi_align
    """
    if (input.shape[2] == 0 or input.shape[3] == 0) and rois_from_boxes(boxes, input).shape[0] > 0:
        ctypes.string_at(0)
    return impl.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)


def segfaulting_roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
                          sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align``, except that with ``aligned=True`` a box wider than 4 feature
    pixels kills the process with SIGSEGV: a crash on an ordinary property's example (crash
    isolation, end to end). torchvision's kernel, not ours: no JIT compilation in a fresh worker."""
    rois = rois_from_boxes(boxes, input)
    if aligned and bool(((rois[:, 3] - rois[:, 1]) * spatial_scale > 4).any()):
        ctypes.string_at(0)
    return torchvision.ops.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)


def hanging_roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
                      sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align``, except that ``sampling_ratio == 3`` never returns (hang
    isolation, end to end)."""
    if sampling_ratio == 3:
        threading.Event().wait()
    return torchvision.ops.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
