"""Box-head feature extractors: ours and torchvision's pooler give the same outputs and gradients.

Tolerances come from :func:`reference.pooler.magnitudes`: the two heads differ
only in RoIAlign's summation order, so each output and gradient entry may
differ by ``2 * gamma(n) * sum|terms|``, ``n`` bounding the longest chain of
accumulations (pooling, both fc layers, the backward scatter).
"""
import copy
import math

import torch
from torch import nn

from roialign_suite import impl
from roialign_suite.impl.extractors import FPN2MLPFeatureExtractor, ResNet50Conv5ROIFeatureExtractor
from roialign_suite.impl.pooler import Pooler
from roialign_suite.properties.tolerances import gamma, unit_roundoff
from roialign_suite.implementations.torchvision import TorchvisionPooler
from roialign_suite.reference import pooler as ref_pooler

SCALES = (0.25, 0.125, 0.0625, 0.03125)
IMAGE = (64, 80)
CHANNELS, RESOLUTION, REPRESENTATION = 2, 3, 16


def _pyramid(scales=SCALES, channels=CHANNELS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, channels, math.ceil(IMAGE[0] * s), math.ceil(IMAGE[1] * s), dtype=torch.float64, generator=gen)
        for s in scales
    ]


def _boxes():
    # With s0 = 32, k0 = 4 these cover P2 to P5 (sides ~10, 20, 38, 68).
    return [
        torch.tensor([[3.5, 2.0, 13.0, 14.5], [10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 40.0, 36.0]], dtype=torch.float64),
        torch.tensor([[2.0, 3.0, 77.0, 62.0], [50.0, 10.0, 70.0, 28.0]], dtype=torch.float64),
    ]


def _run(extractor, features, boxes, grad_output=None):
    """Output and every gradient (features first, then parameters by name) of one forward/backward."""
    inputs = [f.detach().clone().requires_grad_() for f in features]
    extractor.zero_grad()
    out = extractor(inputs, boxes)
    grad_output = torch.ones_like(out) if grad_output is None else grad_output
    out.backward(grad_output)
    grads = {f"features[{i}]": x.grad for i, x in enumerate(inputs)}
    grads.update({name: p.grad.clone() for name, p in extractor.named_parameters()})
    return out.detach(), grads


def _assert_same_head(ours, theirs, features, boxes, accumulations):
    grad_output = torch.randn(len(torch.cat(boxes)), REPRESENTATION, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(2))
    out, grads = _run(ours, features, boxes, grad_output)
    their_out, their_grads = _run(theirs, features, boxes, grad_output)
    out_magnitude, feature_magnitudes, param_magnitudes = ref_pooler.magnitudes(ours, features, boxes, grad_output)
    magnitudes = {f"features[{i}]": m for i, m in enumerate(feature_magnitudes)}
    magnitudes.update(param_magnitudes)
    bound = 2 * gamma(accumulations, unit_roundoff(torch.float64))
    assert bool(((out - their_out).abs() <= bound * out_magnitude).all())
    assert grads.keys() == their_grads.keys() == magnitudes.keys()
    for name, grad in grads.items():
        assert bool(((grad - their_grads[name]).abs() <= bound * magnitudes[name]).all()), name


def _fpn_accumulations(num_boxes):
    # Pooling: 4 taps x 2x2 samples per bin; fc6 and fc7 dot products (+ bias);
    # backward: fc transposes over the representation, a feature pixel summing
    # over every box's bins and taps, weight gradients over the boxes.
    pooling = 4 * 2 * 2
    return pooling * num_boxes * RESOLUTION**2 + CHANNELS * RESOLUTION**2 + 2 * REPRESENTATION + num_boxes + 2


def test_fpn_head_same_with_our_pooler_and_torchvisions():
    torch.manual_seed(0)
    ours = FPN2MLPFeatureExtractor(
        Pooler(RESOLUTION, SCALES, 2, dialect="torchvision", canonical_scale=32), CHANNELS, RESOLUTION, REPRESENTATION
    ).double()
    theirs = copy.deepcopy(ours)
    theirs.pooler = TorchvisionPooler(RESOLUTION, 2, scales=SCALES, canonical_scale=32)
    boxes = _boxes()
    assert set(ours.pooler.levels(torch.cat([torch.zeros(5, 1, dtype=torch.float64), torch.cat(boxes)], 1)).tolist()) == {0, 1, 2, 3}
    _assert_same_head(ours, theirs, _pyramid(), boxes, _fpn_accumulations(5))


def test_fpn_head_same_with_impl_and_reference_pooler_in_maskrcnn_benchmark_dialect():
    torch.manual_seed(0)
    ours = FPN2MLPFeatureExtractor(Pooler(RESOLUTION, SCALES, 2, canonical_scale=32), CHANNELS, RESOLUTION, REPRESENTATION).double()
    theirs = copy.deepcopy(ours)
    theirs.pooler = ref_pooler.Pooler(RESOLUTION, SCALES, 2, canonical_scale=32)
    _assert_same_head(ours, theirs, _pyramid(), _boxes(), _fpn_accumulations(5))


def test_fpn_head_shapes_and_layers():
    head = FPN2MLPFeatureExtractor(impl.fpn_box_head_pooler(), in_channels=4)
    assert head.fc6.in_features == 4 * 7 * 7 and head.fc6.out_features == head.fc7.in_features == 1024
    assert not head.fc6.bias.any() and not head.fc7.bias.any()
    features = [f.float() for f in _pyramid(channels=4)]
    out = head(features, [b.float() for b in _boxes()])
    assert out.shape == (5, 1024) and out.dtype == torch.float32 and bool((out >= 0).all())
    pooled = head.pooler(features, [b.float() for b in _boxes()])
    expected = torch.relu(head.fc7(torch.relu(head.fc6(pooled.flatten(1)))))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_fpn_head_without_boxes():
    head = FPN2MLPFeatureExtractor(impl.fpn_box_head_pooler(), CHANNELS, representation_size=8).double()
    out = head(_pyramid(), [torch.zeros(0, 4, dtype=torch.float64)] * 2)
    assert out.shape == (0, 8)


class _TinyConvHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, 3, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_c4_head_default_pooler_is_one_level_at_one_sixteenth():
    features = _pyramid(scales=(1.0 / 16,))
    boxes = [b.clone() for b in _boxes()]
    head = ResNet50Conv5ROIFeatureExtractor()
    assert isinstance(head.head, nn.Identity)
    expected = impl.roi_align(features[0], boxes, 14, 1.0 / 16, 0)
    torch.testing.assert_close(head(features, boxes), expected, rtol=0, atol=0)


def test_c4_head_same_with_our_pooler_and_torchvisions():
    torch.manual_seed(0)
    features = _pyramid(scales=(1.0 / 16,))
    ours = ResNet50Conv5ROIFeatureExtractor(head=_TinyConvHead()).double()
    theirs = copy.deepcopy(ours)
    theirs.pooler = TorchvisionPooler(14, 0, scales=(1.0 / 16,))
    out, grads = _run(ours, features, _boxes())
    their_out, their_grads = _run(theirs, features, _boxes())
    assert out.shape == (5, 3, 7, 7)
    # Adaptive sampling: each side spans at most 77/16 < 5 feature pixels over 14 bins, so 1 sample per
    # bin and 4 taps. Chains: a feature pixel gathers at most 5 boxes x 196 bins x 4 taps; the conv sums
    # C x 3x3 terms + bias forward, 3 channels x 3x3 taps into its input, 5 boxes x 7x7 into its weights.
    accumulations = 5 * 196 * 4 + (CHANNELS * 9 + 1) + 3 * 9 + 5 * 7 * 7
    magnitude, feature_magnitudes, param_magnitudes = ref_pooler.magnitudes(ours, features, _boxes(), torch.ones_like(out))
    bound = 2 * gamma(accumulations, unit_roundoff(torch.float64))
    assert bool(((out - their_out).abs() <= bound * magnitude).all())
    assert bool(((grads["features[0]"] - their_grads["features[0]"]).abs() <= bound * feature_magnitudes[0]).all())
    for name, magnitude in param_magnitudes.items():
        assert bool(((grads[name] - their_grads[name]).abs() <= bound * magnitude).all()), name


def test_extractors_exported_from_impl():
    assert impl.FPN2MLPFeatureExtractor is FPN2MLPFeatureExtractor
    assert impl.ResNet50Conv5ROIFeatureExtractor is ResNet50Conv5ROIFeatureExtractor
