"""Kernels for tests/test_suite_report.py and tests/test_benchmark_accuracy.py: RoIAligns with a known bug,
named as ``--roialign-target``.

``ignores_aligned`` is our RoIAlign except that it ignores ``aligned`` (always the
legacy pixel convention): every case with ``aligned=True`` and a box that
samples non-constant features shows it, so Hypothesis finds it in a few
examples and shrinks it to a small case.
"""
from __future__ import annotations

import torchvision

from roialign_suite import impl


def ignores_aligned(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """``impl.roi_align`` with ``aligned`` ignored (the planted bug)."""
    return impl.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, False)


def first_box_only(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """``impl.roi_align`` that pools every box as if it were the first (the planted bug): it shows only
    with two boxes or more, which the suite's explicit examples never have, so Hypothesis has to
    generate the failure and shrink it."""
    out = impl.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    return out[:1].expand_as(out).clone() if out.shape[0] > 1 else out


def scaled_by_1_01(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """``torchvision.ops.roi_align`` times 1.01 (the planted bug): 1% of max |reference| wrong, forward and gradient."""
    return 1.01 * torchvision.ops.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
