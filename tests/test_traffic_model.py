"""The forward's traffic model (benchmarks/traffic.py) against a count made sample by sample from the float64
reference's own definitions (``sample_points``, ``bilinear_taps``): it shares no code with the model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from roialign_suite.benchmarks import traffic
from roialign_suite.benchmarks.workloads import Workload
from roialign_suite.reference.roi_align import bilinear_taps, roi_geometry, sample_points

ROIS = np.array([
    [0, 0.0, 0.0, 30.0, 20.0],      # inside
    [1, -10.0, 5.0, 12.0, 60.0],    # past the top and left edges, and the bottom
    [0, 3.0, 3.0, 3.5, 3.2],        # smaller than a pixel: the legacy 1 x 1 rule
    [1, 60.0, 40.0, 70.0, 44.0],    # partly past the right edge
    [0, 66.0, 50.0, 70.0, 54.0],    # sampling 3, legacy: a sample exactly on x = W and one on y = H (still read)
], dtype=np.float64)


def _by_definition(feature, rois, workload, scale, path):
    """Taps loaded and distinct pixels (or NCHW lines) touched, sample by sample."""
    n, channels, height, width = feature.shape
    element = feature.element_size()
    taps, touched = 0, set()
    for roi in rois:
        g = roi_geometry(tuple(roi[1:]), (workload.output_size,) * 2, scale, workload.sampling_ratio, workload.aligned)
        for _, _, y, x in sample_points(g, (workload.output_size,) * 2):
            for row, column, _ in bilinear_taps(y, x, height, width):
                taps += 1
                column = column * element // traffic.LINE_BYTES if path == "gather" else column
                touched.add((int(roi[0]), row, column))
    unit = traffic.LINE_BYTES if path == "gather" else element
    return taps * channels * element, len(touched) * channels * unit


@pytest.mark.parametrize("path", ["gather", "convert", "nhwc"])
@pytest.mark.parametrize("sampling_ratio, aligned", [(2, False), (0, True), (3, True), (3, False)])
def test_level_traffic_matches_a_count_by_definition(path, sampling_ratio, aligned):
    feature = torch.zeros(2, 3, 13, 17)
    workload = Workload("toy", op="roi_align", strides=(4,), channels=3, rois_per_image=2, output_size=3,
                        sampling_ratio=sampling_ratio, aligned=aligned)
    got = traffic.level_traffic(feature, ROIS, workload, 0.25, path)
    tap, touched = _by_definition(feature, ROIS, workload, 0.25, path)
    assert got["tap"] == tap and got["map"] == touched, (got, tap, touched)
    assert got["output"] == len(ROIS) * 3 * 9 * 4
    assert got["convert"] == (2 * feature.numel() * 4 if path == "convert" else 0)
