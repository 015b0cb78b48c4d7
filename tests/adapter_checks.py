"""Hand-checked cases for an adapter module of ``implementations/`` (torchvision's roi_align signature).

A test module imports these tests (``from adapter_checks import *``) and
defines the fixture ``adapter``: the adapter module, or a skip carrying its
``unavailable()`` reason. Each case is small enough to check by hand; where
the expected value is not written out it is the float64 reference's, and the
bound next to the check says why it holds.
"""
import pytest
import torch

from roialign_suite import reference

BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
BOTH_DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])

# detectron2 tests/layers/test_roi_align.py: arange(25) on a 5x5 map, box (1, 1, 3, 3),
# output 4x4, adaptive sampling (grid 1: ceil(2 / 4) or ceil(2 / 4) aligned), scale 1. Every
# sample is a short dyadic fraction and the map is linear, so both dtypes give these exactly.
DETECTRON2_LEGACY = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
DETECTRON2_ALIGNED = [[4.5, 5, 5.5, 6], [7, 7.5, 8, 8.5], [9.5, 10, 10.5, 11], [12, 12.5, 13, 13.5]]

# float64 forward/backward against the float64 reference on maps of |x| < 5 with at most
# 64 samples per bin: both sides sum at most 4 * 64 products of size < 5, each rounding
# within 2^-53 relative, so they agree to far better than 1e-12.
FLOAT64_ATOL = 1e-12


def _map(n=2, c=3, h=6, w=7, dtype=torch.float64, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


BOXES = [[1, 0.5, 1.25, 5.0, 4.5], [0, 1.0, 0.0, 3.5, 5.75], [1, 2.0, 2.0, 6.0, 3.0]]


@BOTH_DTYPES
@pytest.mark.parametrize("aligned, expected", [(False, DETECTRON2_LEGACY), (True, DETECTRON2_ALIGNED)],
                         ids=["legacy", "aligned"])
def test_detectron2_fixture(adapter, dtype, aligned, expected):
    x = torch.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    out = adapter.roi_align(x, torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=dtype), (4, 4), 1.0, 0, aligned)
    assert out.dtype == dtype and out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=dtype), rtol=0, atol=0)


def test_batch_index_selects_the_image(adapter):
    # Image 1 is image 0 plus 100: a RoI on image 1 gives exactly 100 more (weights sum to 1,
    # every value here is a small dyadic float64).
    image = torch.arange(30, dtype=torch.float64).reshape(1, 1, 5, 6)
    x = torch.cat([image, image + 100])
    boxes = torch.tensor([[0, 1.0, 1.0, 4.0, 3.0], [1, 1.0, 1.0, 4.0, 3.0]], dtype=torch.float64)
    out = adapter.roi_align(x, boxes, 2, 1.0, 2, False)
    torch.testing.assert_close(out[1] - out[0], torch.full((1, 2, 2), 100.0, dtype=torch.float64), rtol=0, atol=0)


@BOTH_CONVENTIONS
@pytest.mark.parametrize("sampling_ratio", [2, 0], ids=["fixed", "adaptive"])
def test_forward_matches_reference(adapter, aligned, sampling_ratio):
    x, boxes = _map(), torch.tensor(BOXES, dtype=torch.float64)
    out = adapter.roi_align(x, boxes, (2, 3), 0.5, sampling_ratio, aligned)
    expected = reference.roi_align(x, boxes, (2, 3), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(out, expected, rtol=0, atol=FLOAT64_ATOL)


@BOTH_CONVENTIONS
def test_list_of_per_image_boxes_equals_the_rows(adapter, aligned):
    x, rows = _map(), torch.tensor(BOXES, dtype=torch.float64)
    per_image = [rows[rows[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rows[:, 0] == i).flatten() for i in range(2)])
    out = adapter.roi_align(x, per_image, 2, 1.0, 2, aligned)
    torch.testing.assert_close(out, adapter.roi_align(x, rows[order], 2, 1.0, 2, aligned), rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_non_contiguous_input_matches_reference(adapter, layout):
    x, boxes = _map(), torch.tensor(BOXES, dtype=torch.float64)
    if layout == "channels_last":
        strided = x.contiguous(memory_format=torch.channels_last)
    else:
        strided = torch.zeros(2, 3, 6, 14, dtype=torch.float64)
        strided[..., ::2] = x
        strided = strided[..., ::2]
    assert not strided.is_contiguous()
    # A kernel may sum in another order for another layout (IPEX's channels_last path): the
    # float64 bound, not bitwise equality.
    expected = reference.roi_align(x, boxes, 2, 1.0, 2, False)
    torch.testing.assert_close(adapter.roi_align(strided, boxes, 2, 1.0, 2, False), expected, rtol=0, atol=FLOAT64_ATOL)


@BOTH_CONVENTIONS
def test_backward_matches_the_reference_gradient(adapter, aligned):
    x, boxes = _map(), torch.tensor(BOXES, dtype=torch.float64)
    grad_output = _map(3, 3, 2, 2, seed=1)
    ours = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(adapter.roi_align(ours, boxes, 2, 0.5, 2, aligned), ours, grad_output)
    ref = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(reference.roi_align(ref, boxes, 2, 0.5, 2, aligned), ref, grad_output)
    assert grad.dtype == torch.float64 and grad.shape == x.shape
    torch.testing.assert_close(grad, expected, rtol=0, atol=FLOAT64_ATOL)


def test_float32_gradient_is_float32(adapter):
    x = _map(dtype=torch.float32).requires_grad_()
    out = adapter.roi_align(x, torch.tensor(BOXES, dtype=torch.float32), 2, 1.0, 2, False)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert out.dtype == grad.dtype == torch.float32


def test_no_boxes_gives_an_empty_output(adapter):
    out = adapter.roi_align(_map(), torch.zeros(0, 5, dtype=torch.float64), (2, 3), 1.0, 2, False)
    assert out.shape == (0, 3, 2, 3) and out.dtype == torch.float64


def test_record_names_the_adapter(adapter):
    record = adapter.record()
    assert record.name == adapter.NAME and record.roi_align is adapter.roi_align and record.unavailable is None
