"""The forward's path choice (impl.cost_model) and the sample counts it is fed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from roialign_suite import impl
from roialign_suite.impl import cost_model, ops
from roialign_suite.impl.inputs import samples_per_roi
from roialign_suite.reference.roi_align import roi_geometry

P2_BYTES = 2 * 256 * 200 * 304 * 4
TAPS_PER_ROI = 7 * 7 * 2 * 2 * 256  # the box head's: 7x7 bins, 2x2 samples, 256 channels


def test_few_rois_on_a_large_map_gather():
    assert not cost_model.convert_levels([P2_BYTES], [16 * TAPS_PER_ROI], [False])[0]


def test_many_rois_on_a_large_map_convert():
    assert cost_model.convert_levels([P2_BYTES], [1024 * TAPS_PER_ROI], [False])[0]


def test_a_channels_last_map_with_rois_takes_the_nhwc_kernel():
    assert cost_model.convert_levels([P2_BYTES], [TAPS_PER_ROI], [True])[0]


def test_predicted_crossover_lies_between_the_measured_counts():
    """The constants put the P2 box head's crossover where `roialign-suite crossover` measured it (128-256 RoIs)."""
    crossover = cost_model.CONVERT_NS * P2_BYTES / ((cost_model.GATHER_NS - cost_model.NHWC_NS) * TAPS_PER_ROI)
    assert 128 <= crossover <= 256


@pytest.mark.parametrize("path", ["gather", "convert"])
def test_a_forced_path_applies_to_every_level(path):
    with cost_model.forward_path(path):
        chosen = cost_model.convert_levels([P2_BYTES, 100], [TAPS_PER_ROI, 1e9], [False, True])
    assert chosen.tolist() == [path == "convert"] * 2
    assert not cost_model.convert_levels([P2_BYTES], [TAPS_PER_ROI], [False])[0], "the forced path outlived its block"


def test_an_unknown_path_is_refused():
    with pytest.raises(ValueError, match="forward path must be one of"):
        with cost_model.forward_path("fastest"):
            pass


def _pyramid(channels=64):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, channels, 256 // 2**i, 256 // 2**i, generator=gen) for i in range(4)]


def test_a_pyramid_mixes_paths_and_the_mix_changes_no_bit():
    """One box on P2 (16 MB map: gather) and 64 on P5 (256 KB: convert) take different paths, with the bits of either."""
    features = _pyramid()
    pooler = impl.Pooler(7, (0.25, 0.125, 0.0625, 0.03125), 2)
    small = torch.tensor([[10.0, 10.0, 60.0, 60.0]])  # ~50 px: P2
    large = torch.tensor([[0.0, 0.0, 1000.0, 1000.0]]).repeat(64, 1) * torch.linspace(0.5, 1.0, 64)[:, None]
    boxes = [torch.cat([small, large])]
    rois = torch.cat([torch.zeros(65, 1), boxes[0]], dim=1).double().numpy()
    levels = pooler.levels(torch.cat([torch.zeros(65, 1), boxes[0]], dim=1)).numpy()
    assert levels[0] == 0 and (levels[1:] == 3).all()
    chosen = ops.levels_to_convert(features, rois, levels, pooler.scales, (7, 7), 2, False)
    assert chosen.tolist() == [False, False, False, True]
    outs = {}
    for path in cost_model.PATHS:
        with cost_model.forward_path(path):
            outs[path] = pooler(features, boxes)
    assert torch.equal(outs["auto"], outs["gather"]) and torch.equal(outs["auto"], outs["convert"])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_samples_per_roi_counts_the_definitions_samples(aligned, sampling_ratio):
    """As many samples as the reference's geometry takes: legacy 1-pixel minimum, ceil of adaptive grids,
    none for an inverted aligned box."""
    boxes = [(0.0, 0.0, 3.0, 5.0), (2.0, 2.0, 2.0, 2.0), (10.0, 10.0, 4.0, 4.0), (1.0, 2.0, 70.5, 33.25)]
    rois = np.array([(0.0,) + b for b in boxes])
    counted = samples_per_roi(rois, np.zeros(len(boxes), np.int64), [0.5], (3, 4), sampling_ratio, aligned)
    for box, count in zip(boxes, counted):
        g = roi_geometry(box, (3, 4), 0.5, sampling_ratio, aligned)
        assert count == 3 * 4 * max(g.grid_h, 0) * max(g.grid_w, 0), box
