"""The MNN adapter's conversions (implementations/mnn.py) on small hand-checked cases.

Skipped with the adapter's reason where the ``mnn`` package is absent
(``pip install '.[mnn]'``).
"""
from __future__ import annotations

import math

import pytest
import torch

from roialign_suite import reference
from roialign_suite.implementations import mnn

pytestmark = pytest.mark.skipif(mnn.unavailable() is not None, reason=str(mnn.unavailable()))

# Ramp map f(y, x) = 10 y + x on 5 x 5 (values <= 44): bilinear interpolation of a
# linear map is exact, so a bin of samples symmetric about its centre averages to
# the ramp at the centre. Every coordinate here is exact in float32, so MNN errs
# only in its float32 sums: <= 16 taps per bin, gamma(24) * 44 ~ 6e-5 -> 1e-4.
RAMP_ATOL = 1e-4
# Random maps (|f| <= 5) with boxes <= 12 image px at scale 0.5: float32 sums as
# above (~3e-6) plus misplaced samples, 16 u (2 * 0.5 * 12 + 2) px ~ 1.3e-5 px
# times the slope bound 4 max|f| = 20 -> 2.7e-4; 4e-4 covers both.
RANDN_ATOL = 4e-4


def ramp(n=1):
    y, x = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
    return (10 * y + x).expand(n, 1, 5, 5).clone()


@pytest.mark.parametrize("aligned, centres", [(False, (1.0, 3.0)), (True, (0.5, 2.5))])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_ramp_bins_are_the_bin_centres(aligned, centres, sampling_ratio):
    """Box (0, 0)-(4, 4), 2 x 2 bins of 2 px: legacy centres at 1 and 3, aligned shifted by -0.5;
    the adaptive grid is ceil(4 / 2) = 2, the same samples."""
    out = mnn.roi_align(ramp(), torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]]), 2, 1.0, sampling_ratio, aligned)
    expected = torch.tensor([[10 * cy + cx for cx in centres] for cy in centres]).reshape(1, 1, 2, 2)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out, expected, atol=RAMP_ATOL, rtol=0)


def test_batch_index_picks_the_image():
    """Image 1 is image 0 + 100: a row with batch index 1 reads it."""
    x = torch.cat([ramp(), ramp() + 100])
    out = mnn.roi_align(x, torch.tensor([[1, 0.0, 0.0, 4.0, 4.0], [0, 0.0, 0.0, 4.0, 4.0]]), 1, 1.0, 2, False)
    torch.testing.assert_close(out.flatten(), torch.tensor([122.0, 22.0]), atol=RAMP_ATOL, rtol=0)


def _random_case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6, 7, 9, generator=gen).clamp(-5, 5)
    boxes = [torch.tensor([[0.5, 1.0, 11.0, 9.5], [3.0, 2.0, 6.0, 12.0]]), torch.zeros(0, 4),
             torch.tensor([[-2.0, -1.5, 8.0, 4.0]])]
    return x, boxes


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 3])
def test_per_image_list_and_rows_match_the_reference(aligned, sampling_ratio):
    """The list form (image 1 has no box) equals the [K, 5] form and the reference; C = 6 spans two channel packs."""
    x, boxes = _random_case()
    rows = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    assert rows[:, 0].tolist() == [0.0, 0.0, 2.0]
    args = ((3, 2), 0.5, sampling_ratio, aligned)
    from_list = mnn.roi_align(x, boxes, *args)
    torch.testing.assert_close(from_list, mnn.roi_align(x, rows, *args), atol=0, rtol=0)
    expected = reference.roi_align(x.double(), rows.double(), *args)
    torch.testing.assert_close(from_list.double(), expected, atol=RANDN_ATOL, rtol=0)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_any_strides(layout):
    x, boxes = _random_case(1)
    strided = {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.zeros(3, 12, 7, 18)[:, ::2, :, ::2].copy_(x),
    }[layout]
    assert not strided.is_contiguous()
    torch.testing.assert_close(mnn.roi_align(strided, boxes, 2, 0.5, 2, True), mnn.roi_align(x, boxes, 2, 0.5, 2, True),
                               atol=0, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
def test_backward_is_the_reference_gradient(aligned):
    """MNN's own backward: d input for a random upstream gradient, in float32, equals the reference's
    (float32 scatter of <= 4 * 3 * 3 taps per pixel per box, 3 boxes: within RANDN_ATOL)."""
    x, boxes = _random_case(2)
    x = x.requires_grad_()
    out = mnn.roi_align(x, boxes, (3, 2), 0.5, 3, aligned)
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(out, x, grad_output)
    x64 = x.detach().double().requires_grad_()
    rows = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)]).double()
    (expected,) = torch.autograd.grad(reference.roi_align(x64, rows, (3, 2), 0.5, 3, aligned), x64, grad_output.double())
    assert grad.dtype == torch.float32 and grad.shape == x.shape
    assert expected.abs().max() > 0.1  # the gradient is not trivially zero
    torch.testing.assert_close(grad.double(), expected, atol=RANDN_ATOL, rtol=0)


def test_backward_of_a_box_inside_the_map_keeps_the_gradient_mass():
    """Every sample of (0.5, 0.5)-(3.5, 3.5) lies inside 5 x 5: its bilinear weights sum to 1,
    so d input sums to the upstream gradient's sum (7, 4 bins of 1.75)."""
    x = ramp().requires_grad_()
    out = mnn.roi_align(x, torch.tensor([[0, 0.5, 0.5, 3.5, 3.5]]), 2, 1.0, 2, False)
    out.backward(torch.full_like(out, 1.75))
    assert math.isclose(float(x.grad.sum()), 7.0, abs_tol=1e-5)


def test_other_dtypes_are_refused():
    with pytest.raises(TypeError, match="float64"):
        mnn.roi_align(ramp().double(), torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]], dtype=torch.float64), 2)


def test_no_boxes_is_mnns_refusal_and_the_adapter_returns_the_empty_result():
    """MNN's executor fails on K = 0 (torchvision returns [0, C, h, w]): called directly it still
    does; the adapter returns the empty output and a zero gradient without calling it."""
    import numpy as np

    features = ramp()
    with pytest.raises(RuntimeError, match="MNN refused to compute roi_align's forward"):
        mnn._call(np.ascontiguousarray(features.numpy()), np.zeros((0, 5), np.float32), (2, 2), 1.0, 2, False)
    x = features.clone().requires_grad_(True)
    out = mnn.roi_align(x, torch.zeros(0, 5), 2)
    assert out.shape == (0, x.shape[1], 2, 2) and out.dtype == torch.float32
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.shape == x.shape and not bool(grad.any())


def test_record_describes_the_kernel():
    record = mnn.record()
    assert record.name == "mnn" and record.roi_align is mnn.roi_align and record.unavailable is None
    assert record.dtypes == (torch.float32,) and record.coordinates == torch.float32
