"""OpenCV dnn's RoiAlign adapter (implementations/opencv_dnn.py): the shared forward-adapter
checks (tests/forward_adapter_checks.py) and what is OpenCV's own."""
import pytest
import torch

from forward_adapter_checks import *  # noqa: F401,F403 (the shared checks, collected here)
from forward_adapter_checks import BOX, ramp
from roialign_suite.implementations import opencv_dnn


@pytest.fixture
def adapter():
    reason = opencv_dnn.unavailable()
    if reason:
        pytest.skip(reason)
    return opencv_dnn


def test_net_is_cached_per_configuration(adapter):
    x, boxes = ramp(1, 1, 4, 5), torch.tensor([[0.0] + BOX])
    adapter.roi_align(x, boxes, 2, 0.5, 2, False)
    sessions = len(adapter.roi_align.session)
    adapter.roi_align(x, boxes, 2, 0.5, 2, False)
    assert len(adapter.roi_align.session) == sessions
    adapter.roi_align(x, boxes, 2, 0.5, 2, True)
    assert len(adapter.roi_align.session) == sessions + 1


def test_empty_adaptive_grid_is_sampled_once(adapter):
    """Recorded divergence opencv-empty-adaptive-grid-sampled-once: a zero-size box, aligned,
    adaptive: the definition gives 0; OpenCV returns the ramp at the shifted point (1.5, 1.5)."""
    out = adapter.roi_align(ramp(1, 1, 4, 4), torch.tensor([[0, 2.0, 2.0, 2.0, 2.0]]), 2, 1.0, -1, True)
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), 5 * 1.5 + 1.5), rtol=0, atol=0)
