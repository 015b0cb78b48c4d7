"""The oracles' own front end (reference/inputs.py and the reference pooler's checks).

The reference is the definition the implementations are compared with, so it
must refuse what lies outside torchvision's contract with a clear error (the
argument, and for a box its row) instead of computing something.
"""
import math

import pytest
import torch

from roialign_suite import impl, reference
from roialign_suite.reference import inputs
from roialign_suite.reference import levels as ref_levels
from roialign_suite.reference.pooler import Pooler, pyramid_levels
from roialign_suite.reference.roi_align import check_geometry

SCALES = (0.25, 0.125, 0.0625, 0.03125)


def _features(dtype=torch.float64, n=2):
    return torch.arange(n * 3 * 8 * 8, dtype=torch.float64).reshape(n, 3, 8, 8).to(dtype)


def _rois(dtype=torch.float64):
    return torch.tensor([[0, 1.0, 1.0, 4.0, 4.0], [1, 0.0, 0.5, 2.0, 6.0]], dtype=dtype)


# --- what it accepts ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_floating_dtype_is_computed_in_float64(dtype):
    out = reference.roi_align(_features(dtype), _rois(dtype), 2, 1.0, 2)
    expected = reference.roi_align(_features(dtype).double(), _rois(dtype).double(), 2, 1.0, 2)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype), rtol=0, atol=0)


def test_rois_are_the_callers_exact_values_in_float64():
    boxes = [torch.tensor([[0.1, 0.2, 3.3, 4.4]], dtype=torch.float32), torch.zeros(0, 4), torch.ones(2, 4)]
    rois = inputs.rois_from_boxes(boxes, torch.zeros(3, 1, 4, 4))
    assert rois.dtype == torch.float64 and rois.shape == (3, 5)
    assert rois[:, 0].tolist() == [0.0, 2.0, 2.0]
    assert torch.equal(rois[0, 1:], boxes[0][0].double())


def test_a_list_longer_than_the_batch_is_fine_while_the_extra_images_have_no_boxes():
    boxes = [torch.ones(1, 4), torch.zeros(0, 4), torch.zeros(0, 4)]
    assert reference.roi_align(torch.ones(1, 1, 4, 4), boxes, 2).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("output_size, pair", [(3, (3, 3)), ((2, 5), (2, 5)), ([4, 1], (4, 1))])
def test_output_size_forms(output_size, pair):
    assert inputs.output_size_pair(output_size) == pair


@pytest.mark.parametrize("aligned", [True, False, 1, 0])
def test_aligned_takes_a_bool(aligned):
    assert inputs.check_aligned(aligned) is bool(aligned)


# --- what it refuses, and how it says so ---------------------------------------------

@pytest.mark.parametrize(
    "boxes, error, message",
    [
        ("boxes", TypeError, r"boxes must be a Tensor\[K, 5\] or a list of Tensor\[L, 4\]"),
        ([[0.0, 0.0, 1.0, 1.0]], TypeError, r"boxes\[0\] must be a torch.Tensor"),
        (torch.zeros(2, 4), ValueError, r"boxes must have shape \[K, 5\], got shape \[2, 4\]"),
        (torch.zeros(5), ValueError, r"boxes must have shape \[K, 5\]"),
        ([torch.zeros(1, 4), torch.zeros(1, 5)], ValueError, r"boxes\[1\] must have shape \[L, 4\]"),
        (torch.zeros(1, 5, dtype=torch.float64), TypeError, "boxes must have input's dtype torch.float32, got dtype torch.float64"),
        (torch.zeros(1, 5, device="meta"), ValueError, "boxes must be on input's device cpu, got device meta"),
        (torch.tensor([[0, 1.0, 1.0, 2.0, 2.0], [1, 0.0, math.nan, 1.0, 1.0]]), ValueError, "boxes row 1 has non-finite"),
        (torch.tensor([[0, 1.0, 1.0, 2.0, 2.0], [math.inf, 0.0, 0.0, 1.0, 1.0]]), ValueError, "boxes row 1 has non-finite"),
        (torch.tensor([[0, 1.0, 1.0, 2.0, 2.0], [2, 0.0, 0.0, 1.0, 1.0]]), ValueError,
         r"boxes row 1 has batch index 2.0; it must be an integer in \[0, N\) = \[0, 2\)"),
        (torch.tensor([[-1, 1.0, 1.0, 2.0, 2.0]]), ValueError, "boxes row 0 has batch index -1.0"),
        (torch.tensor([[0.5, 1.0, 1.0, 2.0, 2.0]]), ValueError, "boxes row 0 has batch index 0.5"),
        ([torch.ones(2, 4), torch.tensor([[0.0, 0.0, -math.inf, 1.0]])], ValueError,
         r"boxes\[1\] row 0 \(boxes row 2 in concatenated order\) has non-finite"),
        ([torch.ones(1, 4), torch.ones(1, 4), torch.ones(1, 4)], ValueError,
         r"boxes\[2\] row 0 \(boxes row 2 in concatenated order\) has batch index 2.0"),
    ],
)
def test_bad_boxes(boxes, error, message):
    with pytest.raises(error, match=message):
        reference.roi_align(torch.zeros(2, 3, 8, 8), boxes, 2)


@pytest.mark.parametrize(
    "features, error, message",
    [
        ([[1.0]], TypeError, "input must be a torch.Tensor"),
        (torch.zeros(3, 8, 8), ValueError, r"input must have shape \[N, C, H, W\], got shape \[3, 8, 8\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), TypeError, "input dtype must be one of .*; got torch.int32"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.complex64), TypeError, "input dtype"),
    ],
)
def test_bad_features(features, error, message):
    with pytest.raises(error, match=message):
        reference.roi_align(features, torch.zeros(0, 5), 2)


@pytest.mark.parametrize("shape, rows", [
    ((2, 3, 0, 8), 2), ((2, 3, 8, 0), 1), ((1, 2, 0, 0), 1),  # no pixels: zeros
    ((2, 0, 8, 8), 2), ((2, 0, 0, 8), 1),  # no channels: [K, 0, h, w]
    ((0, 3, 8, 8), 0), ((0, 0, 0, 0), 0), ((2, 3, 0, 8), 0),  # no image, or no box: [0, C, h, w]
])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_zero_sizes_are_defined(shape, rows, sampling_ratio):
    """Any of N, C, H, W, K may be 0: [K, C, h, w] zeros (a map without pixels has nothing to
    sample), or empty; the gradient is zeros of the input's shape."""
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[k % max(shape[0], 1), -1.0, 0.5, 4.0, 3.0] for k in range(rows)], dtype=torch.float64)
    out = reference.roi_align(x, boxes.reshape(-1, 5), (2, 3), 1.0, sampling_ratio, True)
    assert out.shape == (rows, shape[1], 2, 3) and not bool(out.any())
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert grad.shape == x.shape and not bool(grad.any())


def test_no_image_admits_no_box():
    with pytest.raises(ValueError, match=r"boxes row 0 has batch index 0.0; it must be an integer in \[0, N\) = \[0, 0\)"):
        reference.roi_align(torch.zeros(0, 3, 8, 8), torch.tensor([[0, 1.0, 1.0, 2.0, 2.0]]), 2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"output_size": 0}, ValueError, "output_size must be positive"),
        ({"output_size": (2, -1)}, ValueError, "output_size must be positive"),
        ({"output_size": (2,)}, ValueError, "output_size must be an int or"),
        ({"output_size": 2.0}, TypeError, "output_size must be an int or a pair of ints"),
        ({"output_size": True}, TypeError, "output_size"),
        ({"spatial_scale": 0.0}, ValueError, "spatial_scale must be finite and > 0"),
        ({"spatial_scale": math.nan}, ValueError, "spatial_scale"),
        ({"spatial_scale": "1"}, TypeError, "spatial_scale must be a real number"),
        ({"sampling_ratio": 2.0}, TypeError, "sampling_ratio must be an int"),
        ({"sampling_ratio": True}, TypeError, "sampling_ratio"),
        ({"aligned": "yes"}, TypeError, "aligned must be a bool"),
        ({"aligned": 2}, TypeError, "aligned"),
    ],
)
def test_bad_parameters(kwargs, error, message):
    args = {"output_size": 2, "spatial_scale": 1.0, "sampling_ratio": 2, "aligned": False, **kwargs}
    with pytest.raises(error, match=message):
        reference.roi_align(_features(), _rois(), **args)


@pytest.mark.parametrize("aligned", [False, True])
def test_huge_adaptive_grid_names_the_row(aligned):
    side = 4.0 * inputs.MAX_GRID
    boxes = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0], [0, 0.0, 0.0, 1.0, side]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"boxes row 1 .* adaptive sampling grid of 131072 samples per axis"):
        reference.roi_align(_features(), boxes, 2, 1.0, 0, aligned)
    assert reference.roi_align(_features(), boxes, 2, 1.0, 2, aligned).shape == (2, 3, 2, 2)


def test_adaptive_grid_limit_is_exact():
    # The limit applies to the grid the loops would run (aligned: roi_w = x2 - x1 exactly here).
    ok = torch.tensor([[0, 0.0, 0.0, float(inputs.MAX_GRID), 1.0]] * 3, dtype=torch.float64)
    check_geometry(ok, (1, 1), 1.0, 0, True)
    over = ok.clone()
    over[2, 3] += 0.5
    with pytest.raises(ValueError, match=f"boxes row 7 .* grid of {inputs.MAX_GRID + 1} samples"):
        check_geometry(over, (1, 1), 1.0, 0, True, first_row=5)


def test_coordinates_overflowing_float64_name_the_row():
    boxes = torch.tensor([[0, 0.0, 0.0, 1.0, 1.0], [0, -1e308, 0.0, 1e308, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="boxes row 1 .* overflows float64"):
        reference.roi_align(_features(), boxes, 2, 10.0, 2)


def test_module_form_checks_on_call_as_torchvision():
    module = reference.RoIAlign(0, 1.0, 2)
    with pytest.raises(ValueError, match="output_size"):
        module(_features(), _rois())


# --- levels --------------------------------------------------------------------

def test_dialect_by_name_or_by_anything_with_that_name():
    box = torch.tensor([[0.0, 0.0, 111.0, 111.0]])
    for dialect, level in (("maskrcnn_benchmark", 1), ("torchvision", 0), ("detectron2", 0)):
        assert ref_levels.levels_for_boxes(box, 2, 5, dialect=dialect).tolist() == [level]
        assert ref_levels.levels_for_boxes(box, 2, 5, dialect=impl.levels.DIALECTS[dialect]).tolist() == [level]


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((torch.zeros(1, 4), 2, 5), {"dialect": "mmdet"}, ValueError, "dialect must be one of"),
        ((torch.zeros(1, 4), 5, 2), {}, ValueError, "k_min must be <= k_max"),
        ((torch.zeros(1, 4), 2.0, 5), {}, TypeError, "k_min must be an int"),
        ((torch.zeros(1, 4), 2, 5), {"canonical_scale": 0}, ValueError, "canonical_scale must be finite and > 0"),
        ((torch.zeros(1, 4), 2, 5), {"canonical_level": 4.5}, TypeError, "canonical_level must be an int"),
        ((torch.zeros(1, 4), 2, 5), {"eps": -1e-6}, ValueError, "eps must be finite and >= 0"),
        ((torch.zeros(1, 5), 2, 5), {}, ValueError, r"boxes must have shape \[K, 4\]"),
        ((torch.zeros(1, 4, dtype=torch.int64), 2, 5), {}, TypeError, "boxes must be floating point"),
        ((torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, math.nan, 1.0, 1.0]]), 2, 5), {}, ValueError,
         "boxes row 1 has non-finite"),
    ],
)
def test_bad_level_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        ref_levels.levels_for_boxes(*args, **kwargs)


# --- the reference pooler ----------------------------------------------------------

def _pyramid(n=2, channels=2, image=(32, 40), dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    return [
        torch.randn(n, channels, math.ceil(image[0] * s), math.ceil(image[1] * s), generator=gen, dtype=dtype)
        for s in SCALES
    ]


def test_pooler_is_one_roi_align_call_per_box_on_its_level():
    features = _pyramid()
    rois = torch.tensor([[1, 2.0, 2.0, 6.0, 7.0], [0, 0.0, 0.0, 40.0, 40.0], [1, 3.0, 1.0, 20.0, 18.0]],
                        dtype=torch.float64)
    pooler = Pooler(2, SCALES, 2, dialect="torchvision", canonical_scale=16)
    levels = pooler.levels(rois).tolist()
    assert levels == [0, 3, 2]
    out = pooler(features, rois)
    for k, level in enumerate(levels):
        alone = reference.roi_align(features[level], rois[k : k + 1], 2, SCALES[level], 2)
        assert torch.equal(out[k : k + 1], alone), k


def test_pooler_gradient_reaches_every_level_even_unused():
    features = [f.requires_grad_() for f in _pyramid()]
    boxes = [torch.tensor([[2.0, 2.0, 6.0, 7.0]], dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64)]
    out = Pooler(2, SCALES, 2, dialect="torchvision", canonical_scale=16)(features, boxes)
    grads = torch.autograd.grad(out.sum(), features)
    assert grads[0][0].any() and not grads[0][1].any()
    assert all(not g.any() for g in grads[1:])
    empty = Pooler(2, SCALES, 2)(features, torch.zeros(0, 5, dtype=torch.float64))
    assert empty.shape == (0, 2, 2, 2)
    assert all(g is not None for g in torch.autograd.grad(empty.sum(), features))


def test_pooler_errors_name_the_callers_row():
    features = _pyramid()
    bad = [torch.zeros(1, 4, dtype=torch.float64), torch.tensor([[0.0, 0.0, math.nan, 1.0]], dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"boxes\[1\] row 0 \(boxes row 1 in concatenated order\) has non-finite"):
        Pooler(2, SCALES, 2)(features, bad)
    huge = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 0.0, 0.0, 1e9, 1e9]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"boxes row 1 .* adaptive sampling grid"):
        Pooler(2, SCALES, 0)(features, huge)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda f: f[0], TypeError, "features must be a list"),
        (lambda f: f[:3], ValueError, "got 3 maps for 4 scales"),
        (lambda f: f[:3] + [f[3].float()], ValueError, r"features\[3\] .* does not match features\[0\]"),
        (lambda f: f[:3] + [f[3][:1]], ValueError, r"features\[3\] .* does not match"),
        (lambda f: [f[0], f[0]] + f[2:], ValueError, r"features\[1\] has H, W = \[8, 10\] .* \(not a pyramid\)"),
        # A level without rows is a valid map, but not the previous level halved.
        (lambda f: f[:3] + [f[3][:, :, :0]], ValueError, r"features\[3\] has H, W = \[0, 2\] .* \(not a pyramid\)"),
        (lambda f: f[:3] + [f[3][..., 0]], ValueError, r"features\[3\] must have shape \[N, C, H, W\]"),
    ],
)
def test_pooler_bad_features(make, error, message):
    with pytest.raises(error, match=message):
        Pooler(2, SCALES, 2)(make(_pyramid()), torch.zeros(0, 5, dtype=torch.float64))


@pytest.mark.parametrize(
    "scales, error, message",
    [
        ((0.25, 0.1), ValueError, r"scales\[1\] = 0.1 is not a power of two"),
        ((0.25, 0.0625), ValueError, "must halve"),
        ((), ValueError, "non-empty"),
        ((0.25, -0.125), ValueError, r"scales\[1\] must be finite and > 0"),
        ((0.25, "x"), TypeError, r"scales\[1\] must be a real number"),
    ],
)
def test_pooler_bad_scales(scales, error, message):
    with pytest.raises(error, match=message):
        pyramid_levels(scales)
    with pytest.raises(error, match=message):
        Pooler(2, scales, 2)


def test_pooler_constructor_is_impls():
    pooler = Pooler((7, 7), SCALES, 2)
    assert (pooler.k_min, pooler.k_max, pooler.dialect, pooler.canonical_scale, pooler.canonical_level) == (
        2, 5, "maskrcnn_benchmark", 224, 4)
    assert "dialect='maskrcnn_benchmark'" in repr(pooler)
    with pytest.raises(ValueError, match="dialect"):
        Pooler(7, SCALES, 2, dialect="mmdet")
    with pytest.raises(ValueError, match="canonical_scale"):
        Pooler(7, SCALES, 2, canonical_scale=-1)
