"""ncnn's ROIAlign adapter (implementations/ncnn.py): the shared forward-adapter checks
(tests/forward_adapter_checks.py) and what is ncnn's own."""
import pytest
import torch

from forward_adapter_checks import *  # noqa: F401,F403 (the shared checks, collected here)
from forward_adapter_checks import BOX, ramp
from roialign_suite.implementations import ncnn


@pytest.fixture
def adapter():
    reason = ncnn.unavailable()
    if reason:
        pytest.skip(reason)
    return ncnn


def test_param_string_is_version_1_with_pooled_width_first():
    text = ncnn.layer_param((2, 3), 0.25, -1, True)
    assert text.splitlines()[-1].endswith("0=3 1=2 2=0.25 3=-1 4=1 5=1")


def test_zero_channels_is_refused_by_the_layer(adapter):
    """Recorded divergence ncnn-zero-channels-refused: the layer fails with status -100."""
    with pytest.raises(RuntimeError, match="status -100"):
        adapter.roi_align(torch.zeros(1, 0, 4, 5), torch.tensor([[0.0] + BOX]), 2)


def test_negative_grid_is_refused_by_the_layer(adapter):
    """Shared divergence negative-sample-grid-refused (aligned, adaptive, inverted along one axis)."""
    with pytest.raises(ValueError, match="max_size"):
        adapter.roi_align(ramp(1, 1, 4, 4), torch.tensor([[0, 3.0, 1.0, 1.0, 3.0]]), 2, 1.0, -1, True)
