"""Checks every forward-only third-party adapter (``implementations/<kernel>.py``) must pass.

A test module imports these (``from forward_adapter_checks import *``) and defines the
``adapter`` fixture: the adapter module (``roi_align``, ``unavailable``, ``record``,
``DTYPES``), skipped with ``unavailable()``'s reason when its package is absent.

Hand-checked values use a linear ramp ``x[n, c, y, x] = 100 n + 20 c + 5 y + x``:
bilinear interpolation reproduces a linear function exactly, so a bin's value is
the ramp at the mean of its sample points. Every sample coordinate below is a short
binary fraction (exact in float32) and every value is below 2^24, so the kernels'
float32 arithmetic gives these values exactly: they are compared with atol = 0.
"""
import subprocess
import sys

import pytest
import torch

from roialign_suite import reference


def ramp(n: int, c: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """``x[n, c, y, x] = 100 n + 20 c + 5 y + x`` (w <= 5 keeps rows distinct by the 5 y term)."""
    grid = torch.meshgrid(*(torch.arange(s, dtype=torch.float64) for s in (n, c, h, w)), indexing="ij")
    return (100 * grid[0] + 20 * grid[1] + 5 * grid[2] + grid[3]).to(dtype)


# Box (0.5, 0.5, 3.5, 2.5) on a 4x5 map, output 2x2, 2x2 samples per bin.
# Legacy: bins 1.5 px wide, 1 px tall; sample x = 0.875, 1.625 | 2.375, 3.125 (means
# 1.25 | 2.75), y = 0.75, 1.25 | 1.75, 2.25 (means 1.0 | 2.0): 5 y + x.
# Aligned: the box shifted by -0.5: means x 0.75 | 2.25, y 0.5 | 1.5.
BOX = [0.5, 0.5, 3.5, 2.5]
LEGACY = [[6.25, 7.75], [11.25, 12.75]]
ALIGNED = [[3.25, 4.75], [8.25, 9.75]]
BOTH_CONVENTIONS = pytest.mark.parametrize("aligned, expected", [(False, LEGACY), (True, ALIGNED)],
                                           ids=["legacy", "aligned"])


def float32_tolerance(features: torch.Tensor, boxes: torch.Tensor, spatial_scale: float) -> float:
    """atol for a float32 kernel against the float64 reference, boxes inside the map.

    Coordinates up to ``m = max |box| * scale + 1`` px carry float32 rounding of a few
    ulps: <= 4 * m * 2^-24 px; bilinear values move by at most ``s = max - min of the map``
    per px, and the float32 sum of at most 64 samples adds <= 64 * 2^-24 * max|x|.
    """
    m = float(boxes[:, 1:].abs().max()) * spatial_scale + 1
    spread = float(features.max() - features.min())
    return 4 * m * 2 ** -24 * spread + 64 * 2 ** -24 * float(features.abs().max())


@BOTH_CONVENTIONS
def test_hand_checked_ramp(adapter, aligned, expected):
    x = ramp(1, 2, 4, 5)
    out = adapter.roi_align(x, torch.tensor([[0.0] + BOX]), (2, 2), 1.0, 2, aligned)
    assert out.shape == (1, 2, 2, 2) and out.dtype == torch.float32
    want = torch.tensor([expected, [[v + 20 for v in row] for row in expected]], dtype=torch.float32)
    torch.testing.assert_close(out[0], want, rtol=0, atol=0)


@BOTH_CONVENTIONS
def test_float64_in_float64_out(adapter, aligned, expected):
    """float64 input gives float64 output (both layers compute in float: the ramp's values are exact)."""
    out = adapter.roi_align(ramp(1, 1, 4, 5, torch.float64), torch.tensor([[0.0] + BOX], dtype=torch.float64),
                            (2, 2), 1.0, 2, aligned)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=0)
    assert adapter.record().compute_dtype == torch.float32


@BOTH_CONVENTIONS
def test_batch_index_and_list_form(adapter, aligned, expected):
    """Row k pools image batch_index; the list form's position is the batch index."""
    x = ramp(3, 1, 4, 5)
    rows = torch.tensor([[2.0] + BOX, [0.0] + BOX, [2.0] + BOX])
    out = adapter.roi_align(x, rows, (2, 2), 1.0, 2, aligned)
    want = torch.tensor(expected, dtype=torch.float32)
    for k, image in enumerate((2, 0, 2)):
        torch.testing.assert_close(out[k, 0], want + 100 * image, rtol=0, atol=0)
    listed = adapter.roi_align(x, [torch.tensor([BOX]), torch.zeros(0, 4), torch.tensor([BOX, BOX])],
                               (2, 2), 1.0, 2, aligned)
    torch.testing.assert_close(listed, out[[1, 0, 2]], rtol=0, atol=0)


@pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.25])
def test_adaptive_grid_and_scale_match_the_reference(adapter, aligned, spatial_scale):
    """sampling_ratio <= 0 is the adaptive grid (ceil(roi / pooled) per axis), as the reference."""
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[1, 0.7, 1.3, 8.9, 7.2], [0, 2.1, 0.4, 4.3, 6.6], [1, 0.0, 0.0, 10.0, 8.0]])
    boxes[:, 1:] /= spatial_scale
    for sampling_ratio in (-1, 0, 3):
        got = adapter.roi_align(x, boxes, (3, 2), spatial_scale, sampling_ratio, aligned)
        want = reference.roi_align(x.double(), boxes.double(), (3, 2), spatial_scale, sampling_ratio, aligned)
        torch.testing.assert_close(got.double(), want, rtol=0, atol=float32_tolerance(x, boxes, spatial_scale))


@pytest.mark.parametrize("layout", ["permuted", "channels_last", "strided"])
def test_non_contiguous_input(adapter, layout):
    base = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(1))
    x = {
        "permuted": base.transpose(2, 3).contiguous().transpose(2, 3),
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "strided": torch.zeros(2, 3, 12, 7).index_copy_(2, torch.arange(0, 12, 2), base)[:, :, ::2],
    }[layout]
    assert torch.equal(x, base) and not x.is_contiguous()
    boxes = torch.tensor([[1, 0.3, 1.2, 5.5, 4.1], [0, 1.0, 0.5, 3.0, 5.0]])
    torch.testing.assert_close(adapter.roi_align(x, boxes, (2, 3), 1.0, 2, True),
                               adapter.roi_align(base, boxes, (2, 3), 1.0, 2, True), rtol=0, atol=0)


def test_no_boxes(adapter):
    out = adapter.roi_align(ramp(2, 3, 4, 5), torch.zeros(0, 5), (2, 4))
    assert out.shape == (0, 3, 2, 4) and out.dtype == torch.float32


def test_bad_input_names_the_argument(adapter):
    x = ramp(1, 1, 4, 5)
    with pytest.raises(ValueError, match="batch"):
        adapter.roi_align(x, torch.tensor([[1.0] + BOX]), 2)
    with pytest.raises((TypeError, ValueError), match="boxes"):
        adapter.roi_align(x, torch.tensor([BOX]), 2)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        if dtype not in adapter.DTYPES:
            with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
                adapter.roi_align(x.to(dtype), torch.tensor([[0.0] + BOX], dtype=dtype), 2)


def test_record(adapter):
    entry = adapter.record()
    assert entry.roi_align is adapter.roi_align and entry.unavailable is None
    assert not entry.differentiable  # inference engines: no backward to call
    assert entry.dtypes == adapter.DTYPES
    from roialign_suite.implementations import registry
    assert registry.by_name()[entry.name].roi_align is adapter.roi_align


def test_importing_does_not_import_the_kernel(adapter):
    """The suite imports every adapter at start-up: the kernel's package is imported lazily."""
    package = adapter.PACKAGE
    code = (f"import sys; import {adapter.__name__}; "
            f"assert {package!r} not in sys.modules, 'imported {package} at import time'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
