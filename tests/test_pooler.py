"""The multi-level pooler: scale handling, per-level agreement, torchvision, gradients, empty and bad inputs.

The test pyramid is P2-P5 of a 64x80 image with ``s0 = 32, k0 = 4`` so that
small boxes spread over all four levels: side <= 15 -> P2, 16-31 -> P3,
32-63 -> P4, >= 64 -> P5 (torchvision dialect).
"""
import math

import pytest
import torch

from roialign_suite import impl
from roialign_suite.impl.pooler import (
    Pooler,
    c4_box_head_pooler,
    fpn_box_head_pooler,
    infer_scales,
    power_of_two_exponent,
    pyramid_levels,
)
from roialign_suite.reference import levels as ref_levels
from roialign_suite.properties.tolerances import gamma, unit_roundoff
from roialign_suite.implementations.torchvision import TorchvisionPooler
from roialign_suite.reference import pooler as ref_pooler

SCALES = (0.25, 0.125, 0.0625, 0.03125)
IMAGE = (64, 80)
SMALL_CANONICAL = {"canonical_scale": 32, "canonical_level": 4}
BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
DIALECTS = pytest.mark.parametrize("dialect", ["maskrcnn_benchmark", "torchvision", "detectron2"])


def _pyramid(image=IMAGE, channels=3, num_images=2, dtype=torch.float64, seed=0):
    """Feature maps at SCALES for an ``image``-sized batch; each level ``ceil`` of half the previous."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [(math.ceil(image[0] * s), math.ceil(image[1] * s)) for s in SCALES]
    return [torch.randn(num_images, channels, h, w, dtype=dtype, generator=gen) for h, w in sizes]


def _boxes(dtype=torch.float64):
    """Per-image boxes covering every level; image 1 has boxes out of the image and a degenerate one."""
    first = torch.tensor(
        [[3.5, 2.0, 13.0, 14.5], [10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 40.0, 36.0], [2.0, 3.0, 77.0, 62.0]],
        dtype=dtype,
    )
    second = torch.tensor(
        [[50.0, 10.0, 70.0, 28.0], [-8.0, -4.0, 30.0, 30.0], [60.0, 40.0, 95.0, 90.0], [5.0, 5.0, 5.0, 9.0]],
        dtype=dtype,
    )
    return [first, second]


def _rois(boxes):
    return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])


# --- scales ------------------------------------------------------------------

def test_pyramid_levels_from_scales():
    assert pyramid_levels(SCALES) == (2, 5)
    assert pyramid_levels([1.0 / 16]) == (4, 4)
    assert pyramid_levels((1.0, 0.5)) == (0, 1)


@pytest.mark.parametrize(
    "scales, message",
    [
        ((0.25, 0.1), r"scales\[1\] = 0.1 is not a power of two"),
        ((0.25, 0.0625), "must halve"),
        ((0.125, 0.25), "must halve"),
        ((), "non-empty"),
        ((0.25, -0.125), r"scales\[1\] must be finite and positive"),
        ((0.25, float("inf")), r"scales\[1\] must be finite and positive"),
    ],
)
def test_bad_scales(scales, message):
    with pytest.raises(ValueError, match=message):
        pyramid_levels(scales)
    with pytest.raises(ValueError, match=message):
        Pooler(7, scales, 2)


def _feature_sizes(image, strides=(4, 8, 16, 32)):
    """Feature map sizes of an FPN on an unpadded image: each stride-2 stage rounds up."""
    sizes, (h, w) = [], image
    for stride in (2, 4, 8, 16, 32):
        h, w = -(-h // 2), -(-w // 2)
        if stride in strides:
            sizes.append((h, w))
    return sizes


@pytest.mark.parametrize("image", [(800, 1333), (800, 1216), (1333, 800), (480, 640), (100, 150), (75, 99), (64, 64)])
def test_inferred_scales_equal_torchvisions(image):
    sizes = _feature_sizes(image)
    expected = ref_pooler.torchvision_inferred_scales(sizes, [image])
    assert list(infer_scales(sizes, [image])) == expected == list(SCALES)


def test_inferred_scales_take_the_largest_image():
    sizes = _feature_sizes((800, 1344))
    images = [(800, 1216), (608, 1344)]
    assert list(infer_scales(sizes, images)) == ref_pooler.torchvision_inferred_scales(sizes, images) == list(SCALES)


def test_inferred_scales_not_a_pyramid_raise():
    # A 20x20 image: P2-P5 are 5, 3, 2, 1 px; 2/20 rounds to 1/8, as does 3/20.
    # torchvision infers [0.25, 0.125, 0.125, 0.0625] and pools from wrong levels.
    sizes = _feature_sizes((20, 20))
    assert ref_pooler.torchvision_inferred_scales(sizes, [(20, 20)]) == [0.25, 0.125, 0.125, 0.0625]
    with pytest.raises(ValueError, match="must halve"):
        infer_scales(sizes, [(20, 20)])


def test_inferred_scales_height_and_width_must_agree():
    # 40 px wide at stride 32 is 2 px: 2/40 rounds to 1/16, while the height says 1/32.
    with pytest.raises(ValueError, match="level 0: .* from the height but .* from the width"):
        infer_scales([(25, 2)], [(800, 40)])


def test_integer_scale_rounding_is_torchvisions_float32_rounding_nearest_the_ties():
    """Our exponent is exact; torchvision rounds ``log2`` of the float32 ratio. They can only differ for
    ratios within float32 roundoff of a tie ``2 ** (k + 1/2)``: check the 300 pairs of sides up to 3000
    px nearest a tie (the nearest, 2786 / 1970, is 2.6e-7 off in relative terms), in both orders."""
    sides = torch.arange(1, 3001, dtype=torch.float64)
    log_ratio = torch.log2(sides[:, None] / sides[None, :])
    distance = (log_ratio - torch.floor(log_ratio) - 0.5).abs().flatten()
    nearest = torch.topk(distance, 300, largest=False).indices
    for numerator, denominator in zip((nearest // 3000 + 1).tolist(), (nearest % 3000 + 1).tolist()):
        for n, d in ((numerator, denominator), (denominator, numerator)):
            theirs = ref_pooler.torchvision_inferred_scales([(n, n)], [(d, d)])
            assert [2.0 ** power_of_two_exponent(n, d)] == theirs, (n, d)


@pytest.mark.parametrize("images", [[], [(0, 10)]])
def test_inferred_scales_bad_images(images):
    with pytest.raises(ValueError, match="image_sizes"):
        infer_scales([(10, 10)], images)


# --- pooling -------------------------------------------------------------------

@DIALECTS
@BOTH_CONVENTIONS
def test_equals_roi_align_on_assigned_level(dialect, aligned):
    features, boxes = _pyramid(), _boxes()
    pooler = Pooler(3, SCALES, 2, aligned=aligned, dialect=dialect, **SMALL_CANONICAL)
    rois = _rois(boxes)
    levels = ref_levels.levels_for_boxes(rois[:, 1:], 2, 5, dialect=dialect, **SMALL_CANONICAL)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    out = pooler(features, boxes)
    for k, level in enumerate(levels.tolist()):
        expected = impl.roi_align(features[level], rois[k : k + 1], 3, SCALES[level], 2, aligned)
        torch.testing.assert_close(out[k : k + 1], expected, rtol=0, atol=0)  # the same kernel on the same row


def _assert_within_rounding(ours, theirs, magnitude, accumulations):
    # Both compute the same sums in different orders from identical sample
    # points: each is within gamma(n) * sum|terms| of the exact value.
    bound = 2 * gamma(accumulations, unit_roundoff(ours.dtype)) * magnitude
    assert bool(((ours - theirs).abs() <= bound).all()), float(((ours - theirs).abs() - bound).max())


@pytest.mark.parametrize("image", [IMAGE, (50, 75)], ids=["64x80", "50x75"])
def test_equals_torchvision_multiscale_roi_align(image):
    # float64: torchvision's kernel and ours compute the same sample points
    # (float64, same operations), so only the summation order differs.
    features, boxes = _pyramid(image), _boxes()
    ours = Pooler(3, SCALES, 2, dialect="torchvision", **SMALL_CANONICAL)
    theirs = TorchvisionPooler(3, 2, image_size=image, scales=SCALES, **SMALL_CANONICAL)
    out = ours(features, boxes)
    magnitude, _, _ = ref_pooler.magnitudes(ours, features, boxes, torch.ones_like(out))
    # A bin averages 4 bilinear taps at 2x2 samples: 16 terms.
    _assert_within_rounding(out, theirs(features, boxes), magnitude, accumulations=16)


@DIALECTS
@BOTH_CONVENTIONS
def test_equals_reference_pooler(dialect, aligned):
    features, boxes = _pyramid(channels=2), _boxes()
    args = (3, SCALES, 2, aligned, dialect)
    out = Pooler(*args, **SMALL_CANONICAL)(features, boxes)
    expected = ref_pooler.Pooler(*args, **SMALL_CANONICAL)(features, boxes)
    magnitude, _, _ = ref_pooler.magnitudes(Pooler(*args, **SMALL_CANONICAL), features, boxes, torch.ones_like(out))
    _assert_within_rounding(out, expected, magnitude, accumulations=16)


@BOTH_CONVENTIONS
def test_gradcheck_into_every_level(aligned):
    # A 16x24 image (P2-P5: 4x6, 2x3, 1x2, 1x1) and s0 = 16, so sides < 8 -> P2, 8-15 -> P3, 16-31 -> P4.
    features = [f.requires_grad_() for f in _pyramid(image=(16, 24), channels=1)]
    boxes = [
        torch.tensor([[1.0, 2.0, 6.0, 7.5], [4.0, 2.0, 14.0, 12.0], [0.0, 0.0, 17.0, 18.0], [-2.0, -4.0, 30.0, 36.0]],
                     dtype=torch.float64),
        torch.tensor([[5.0, 5.0, 12.0, 13.0]], dtype=torch.float64),
    ]
    pooler = Pooler(2, SCALES, 2, aligned=aligned, dialect="torchvision", canonical_scale=16, canonical_level=4)
    assert set(pooler.levels(_rois(boxes)).tolist()) == {0, 1, 2, 3}
    assert torch.autograd.gradcheck(lambda *fs: pooler(list(fs), boxes), features, fast_mode=True)
    pooler(features, boxes).sum().backward()
    assert all(f.grad.any() for f in features)


def test_batch_index_form_in_any_order_equals_list_form():
    features, boxes = _pyramid(), _boxes()
    pooler = Pooler(3, SCALES, 2, **SMALL_CANONICAL)
    rois = _rois(boxes)
    order = torch.tensor([5, 0, 7, 2, 1, 6, 3, 4])
    torch.testing.assert_close(pooler(features, rois[order]), pooler(features, boxes)[order], rtol=0, atol=0)


def test_no_boxes_at_all():
    features = [f.requires_grad_() for f in _pyramid()]
    pooler = Pooler((3, 4), SCALES, 2)
    for boxes in ([torch.zeros(0, 4, dtype=torch.float64)] * 2, torch.zeros(0, 5, dtype=torch.float64)):
        out = pooler(features, boxes)
        assert out.shape == (0, 3, 3, 4) and out.dtype == torch.float64
        out.sum().backward()
        assert all(f.grad is not None and not f.grad.any() for f in features)


def test_empty_image_and_empty_levels_touch_nothing():
    features = [f.requires_grad_() for f in _pyramid(num_images=3)]
    small = torch.tensor([[3.0, 3.0, 10.0, 12.0]], dtype=torch.float64)  # P2 only
    boxes = [torch.zeros(0, 4, dtype=torch.float64), small, torch.zeros(0, 4, dtype=torch.float64)]
    out = Pooler(3, SCALES, 2, **SMALL_CANONICAL)(features, boxes)
    torch.testing.assert_close(out, impl.roi_align(features[0], _rois(boxes), 3, SCALES[0], 2), rtol=0, atol=0)
    out.sum().backward()
    assert features[0].grad[1].any() and not features[0].grad[0].any() and not features[0].grad[2].any()
    assert all(not f.grad.any() for f in features[1:])


def test_single_level_pools_everything_there():
    features = [torch.randn(1, 2, 8, 9, dtype=torch.float64)]
    boxes = [torch.tensor([[0.0, 0.0, 300.0, 300.0], [4.0, 4.0, 20.0, 30.0]], dtype=torch.float64)]
    out = c4_box_head_pooler()(features, boxes)
    torch.testing.assert_close(out, impl.roi_align(features[0], boxes, 14, 1.0 / 16, 0), rtol=0, atol=0)


def test_pyramid_deeper_than_one_kernel_call():
    # Six levels (P2-P7) take two kernel calls of kernels.MAX_LEVELS maps; each level's rows and
    # gradient must still be exactly one roi_align call's on that level's boxes.
    scales = tuple(2.0**-k for k in range(2, 8))
    gen = torch.Generator().manual_seed(3)
    image = (256, 256)
    features = [
        torch.randn(2, 3, math.ceil(image[0] * s), math.ceil(image[1] * s), dtype=torch.float64, generator=gen)
        .requires_grad_()
        for s in scales
    ]
    sides = torch.tensor([4.0, 20.0, 40.0, 90.0, 150.0, 300.0, 6.0, 120.0])
    rois = torch.stack([torch.tensor([i % 2, 2.0, 3.0, 2.0 + side, 3.0 + side]) for i, side in enumerate(sides)])
    rois = rois.double()
    pooler = Pooler(2, scales, 2, dialect="torchvision", canonical_scale=32, canonical_level=4)
    levels = pooler.levels(rois)
    assert set(levels.tolist()) == set(range(6)), levels
    grad_output = torch.randn(rois.shape[0], 3, 2, 2, dtype=torch.float64, generator=gen)
    out = pooler(features, rois)
    grads = torch.autograd.grad(out, features, grad_output)
    for level, (feature, scale) in enumerate(zip(features, scales)):
        rows = levels == level
        alone = impl.roi_align(feature, rois[rows], 2, scale, 2)
        assert torch.equal(out[rows], alone), level
        assert torch.equal(grads[level], torch.autograd.grad(alone, feature, grad_output[rows])[0]), level


def test_box_head_configurations():
    fpn = fpn_box_head_pooler()
    assert (fpn.output_size, fpn.scales, fpn.sampling_ratio, fpn.aligned, fpn.dialect.name) == (
        (7, 7), SCALES, 2, False, "maskrcnn_benchmark")
    assert (fpn.k_min, fpn.k_max, fpn.canonical_scale, fpn.canonical_level) == (2, 5, 224, 4)
    c4 = c4_box_head_pooler()
    assert (c4.output_size, c4.scales, c4.sampling_ratio, c4.k_min, c4.k_max) == ((14, 14), (0.0625,), 0, 4, 4)


# --- bad inputs ------------------------------------------------------------------

def _bad_feature_cases():
    good = _pyramid()
    return [
        (good[:3], ValueError, "features has 3 levels but the pooler has 4 scales"),
        (good[0], TypeError, "features must be a list"),
        (good[:3] + [good[3][:, :2]], ValueError, r"features\[3\] .* does not match features\[0\]"),
        (good[:3] + [good[3].float()], ValueError, r"features\[3\] .* does not match"),
        (good[:3] + [good[3][:1]], ValueError, r"features\[3\] .* does not match"),
        (list(reversed(good)), ValueError, "do not form a pyramid"),
        (good[:1] + [good[0]] + good[2:], ValueError, r"features\[1\] is \(16, 20\) after features\[0\]"),
    ]


@pytest.mark.parametrize("features, error, message", _bad_feature_cases())
def test_bad_features(features, error, message):
    with pytest.raises(error, match=message):
        Pooler(3, SCALES, 2)(features, _boxes())


@pytest.mark.parametrize(
    "boxes, error, message",
    [
        ([torch.zeros(1, 4)], TypeError, "dtype torch.float32 does not match"),
        ([torch.zeros(1, 4, dtype=torch.float64), torch.tensor([[0, float("nan"), 1, 1]], dtype=torch.float64)],
         ValueError, "boxes row 1 has non-finite"),
        (torch.tensor([[2.0, 0, 0, 1, 1]], dtype=torch.float64), ValueError, "boxes row 0 has batch index 2.0"),
        (torch.zeros(2, 4, dtype=torch.float64), ValueError, r"must have shape \[K, 5\]"),
    ],
)
def test_bad_boxes(boxes, error, message):
    with pytest.raises(error, match=message):
        Pooler(3, SCALES, 2)(_pyramid(), boxes)


def test_unbounded_adaptive_grid_names_the_callers_row():
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 30.0, 30.0], [0.0, 0.0, 1e9, 1e9]], dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"boxes row 2 .* adaptive sampling grid"):
        Pooler(3, SCALES, 0)(_pyramid(), boxes)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"output_size": 0}, ValueError, "output_size"),
        ({"sampling_ratio": 1.5}, TypeError, "sampling_ratio"),
        ({"dialect": "mmdet"}, ValueError, "dialect"),
        ({"canonical_scale": -1}, ValueError, "canonical_scale"),
    ],
)
def test_bad_parameters(kwargs, error, message):
    args = {"output_size": 7, "scales": SCALES, "sampling_ratio": 2, **kwargs}
    with pytest.raises(error, match=message):
        Pooler(**args)


def test_torchvision_adapter_refuses_other_scales():
    # Features of a 64x80 image but told the image is 4x as large: torchvision would infer 1/16.. scales.
    adapter = TorchvisionPooler(3, 2, scales=SCALES, image_size=(256, 320))
    with pytest.raises(ValueError, match="torchvision inferred scales"):
        adapter(_pyramid(), _boxes())
