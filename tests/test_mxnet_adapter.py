"""MXNet's RoIAlign adapter (implementations/mxnet.py): the hand-checked cases of adapter_checks.py,
plus what only this adapter does (bfloat16 refused, MXNet not imported with the module)."""
import subprocess
import sys

import pytest
import torch

from adapter_checks import *  # noqa: F401,F403  (the shared hand-checked tests)
from roialign_suite.implementations import mxnet as mxnet_adapter


@pytest.fixture
def adapter():
    reason = mxnet_adapter.unavailable()
    if reason:
        pytest.skip(reason)
    return mxnet_adapter


def test_bfloat16_is_refused_by_name(adapter):
    x = torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="bfloat16"):
        adapter.roi_align(x, torch.tensor([[0, 0, 0, 2, 2]], dtype=torch.bfloat16), 2)


def test_importing_the_adapter_does_not_import_mxnet():
    code = "import sys; import roialign_suite.implementations.mxnet as m; m.record(); print('mxnet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
