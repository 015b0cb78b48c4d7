"""The PaddlePaddle adapter's conversions (implementations/paddle.py) on small hand-checked cases.

Each case is one the float64 reference and Paddle agree on by construction
(boxes of at least one pixel, samples inside the map, dyadic scales), so a
difference is the adapter's: box format and per-image counts, row order,
batch index > 0, the aligned flag, adaptive grid, layout, the backward.
Paddle's own divergences are pinned in properties/corpus/known_divergences/paddle_*.

Tolerances: float64 cases agree to 1e-12 (a handful of float64 roundings on
values of size ~10); the float32 hand-checked values are dyadic fractions,
exact in float32, so they compare exactly.
"""
import pytest
import torch

from roialign_suite import reference
from roialign_suite.implementations import paddle as adapter

pytestmark = pytest.mark.skipif(adapter.unavailable() is not None, reason=str(adapter.unavailable()))

FLOAT64_ATOL = 1e-12
BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])


def features(shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def check_against_reference(x, boxes, **kwargs):
    out = adapter.roi_align(x, boxes, **kwargs)
    expected = reference.roi_align(x.double(), [b.double() for b in boxes] if isinstance(boxes, list)
                                   else boxes.double(), **kwargs)
    assert out.dtype == x.dtype and out.shape == expected.shape
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=FLOAT64_ATOL)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("aligned, expected", [
    # detectron2 tests/layers/test_roi_align.py: arange(25) on 5x5, box (1, 1, 3, 3), 4x4, adaptive.
    (False, [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]),
    (True, [[4.5, 5, 5.5, 6], [7, 7.5, 8, 8.5], [9.5, 10, 10.5, 11], [12, 12.5, 13, 13.5]]),
], ids=["legacy", "aligned"])
def test_detectron2_fixture_by_hand(dtype, aligned, expected):
    x = torch.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    out = adapter.roi_align(x, torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=dtype), (4, 4), 1.0, 0, aligned)
    assert out.dtype == dtype
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=dtype), rtol=0, atol=0)


def test_legacy_and_aligned_differ_by_the_half_pixel_shift():
    # A ramp x + 10 y: a bin's average is the ramp at its centre. Box (0, 0, 2, 2), one bin:
    # legacy centre (1, 1) -> 11; aligned shifts by -0.5: centre (0.5, 0.5) -> 5.5.
    x = (torch.arange(4.0) + 10 * torch.arange(4.0)[:, None]).double().reshape(1, 1, 4, 4)
    box = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    assert adapter.roi_align(x, box, 1, 1.0, 2, False).item() == 11.0
    assert adapter.roi_align(x, box, 1, 1.0, 2, True).item() == 5.5


@BOTH_CONVENTIONS
def test_rows_of_several_images_come_back_in_the_callers_order(aligned):
    # Rows not sorted by image, images 2 and 0 interleaved, image 1 without boxes.
    x = features((3, 2, 7, 8))
    boxes = torch.tensor([[2, 0.5, 1.0, 5.0, 6.0], [0, 1.0, 1.0, 3.0, 3.0], [2, 2.0, 0.0, 7.0, 6.5],
                          [0, 0.0, 2.5, 6.0, 5.0]], dtype=torch.float64)
    check_against_reference(x, boxes, output_size=(2, 3), spatial_scale=1.0, sampling_ratio=2, aligned=aligned)


@BOTH_CONVENTIONS
def test_list_of_per_image_boxes(aligned):
    x = features((2, 1, 6, 6), seed=1)
    boxes = [torch.tensor([[1.0, 1.0, 4.0, 5.0]], dtype=torch.float64),
             torch.tensor([[0.0, 0.5, 3.0, 3.0], [2.0, 2.0, 5.5, 5.0]], dtype=torch.float64)]
    check_against_reference(x, boxes, output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=aligned)


@BOTH_CONVENTIONS
def test_adaptive_grid_and_scale(aligned):
    # Boxes 8..24 image px at scale 0.5: adaptive grids of 2..6 samples per bin.
    x = features((1, 2, 16, 16), seed=2)
    boxes = torch.tensor([[0, 2.0, 4.0, 26.0, 20.0], [0, 6.0, 6.0, 14.0, 30.0]], dtype=torch.float64)
    check_against_reference(x, boxes, output_size=(2, 2), spatial_scale=0.5, sampling_ratio=0, aligned=aligned)


@pytest.mark.parametrize("layout", ["channels_last", "permuted"])
def test_non_contiguous_input(layout):
    x = features((2, 3, 6, 5), seed=3)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = features((2, 5, 6, 3), seed=3).permute(0, 3, 2, 1)
    assert not x.is_contiguous()
    boxes = torch.tensor([[1, 0.5, 0.5, 4.0, 3.5], [0, 1.0, 2.0, 3.0, 5.0]], dtype=torch.float64)
    check_against_reference(x, boxes, output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=False)


def test_no_boxes():
    out = adapter.roi_align(features((2, 3, 4, 4)), torch.zeros(0, 5, dtype=torch.float64), 2)
    assert out.shape == (0, 3, 2, 2) and out.dtype == torch.float64


@BOTH_CONVENTIONS
def test_backward_is_the_references(aligned):
    # Boxes of >= 1 feature pixel (Paddle's backward diverges below: paddle-aligned-backward-clamps-...),
    # two images, rows out of image order, overlapping boxes.
    x = features((2, 2, 6, 7), seed=4).requires_grad_(True)
    boxes = torch.tensor([[1, 0.5, 1.0, 5.0, 5.5], [0, 1.0, 1.0, 4.0, 3.0], [1, 2.0, 0.0, 6.0, 6.0]],
                         dtype=torch.float64)
    kwargs = dict(output_size=(2, 3), spatial_scale=1.0, sampling_ratio=-1, aligned=aligned)
    grad_output = features((3, 2, 2, 3), seed=5)
    (got,) = torch.autograd.grad(adapter.roi_align(x, boxes, **kwargs), x, grad_output)
    (expected,) = torch.autograd.grad(reference.roi_align(x, boxes, **kwargs), x, grad_output)
    assert got.dtype == x.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=FLOAT64_ATOL)


def test_float32_backward_comes_back_in_float32():
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    out = adapter.roi_align(x, torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]]), 1, 1.0, 2, False)
    out.sum().backward()
    assert x.grad.dtype == torch.float32
    # One bin, 4 samples at (0.5|1.5, 0.5|1.5), each a quarter of the upstream 1: the mass is 1.
    assert x.grad.sum().item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_refused_by_name(dtype):
    with pytest.raises(TypeError, match=str(dtype)):
        adapter.roi_align(torch.zeros(1, 1, 2, 2, dtype=dtype), torch.zeros(1, 5, dtype=dtype), 1)


def test_record():
    record = adapter.record()
    assert record.name == "paddle" and record.differentiable and record.unavailable is None
    assert record.dtypes == (torch.float32, torch.float64)
