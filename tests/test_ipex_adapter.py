"""IPEX's RoIAlign adapter (implementations/ipex.py): the hand-checked cases of adapter_checks.py,
plus what only this adapter does (IPEX's kernel really dispatched, bfloat16 boxes as float32,
IPEX not imported with the module)."""
import subprocess
import sys

import pytest
import torch

from adapter_checks import *  # noqa: F401,F403  (the shared hand-checked tests)
from roialign_suite.implementations import ipex as ipex_adapter


@pytest.fixture
def adapter():
    reason = ipex_adapter.unavailable()
    if reason:
        pytest.skip(reason)
    return ipex_adapter


@pytest.mark.parametrize("requires_grad", [False, True], ids=["no-grad", "grad"])
def test_ipex_kernel_is_the_one_dispatched(adapter, requires_grad):
    x = torch.rand(1, 2, 5, 5, requires_grad=requires_grad)
    assert adapter.ipex_dispatched(x, torch.tensor([[0, 0.5, 0.5, 3.0, 3.0]]), 2)


def test_bfloat16_runs_with_float32_rois(adapter):
    # A 2x2 box on a constant map of 3: every sample is 3, exact in bfloat16.
    x = torch.full((1, 1, 4, 4), 3.0, dtype=torch.bfloat16)
    out = adapter.roi_align(x, torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]], dtype=torch.bfloat16), 2, 1.0, 2, False)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), 3.0, dtype=torch.bfloat16), rtol=0, atol=0)


def test_importing_the_adapter_does_not_import_ipex():
    code = ("import sys; import roialign_suite.implementations.ipex as m; m.record(); "
            "print('intel_extension_for_pytorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
