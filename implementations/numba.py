"""Our Numba CPU RoIAlign (``impl.roi_align``, the ``torch.ops.roialign_suite.roi_align`` operator) as an implementation."""
from __future__ import annotations

import torch

from roialign_suite import impl
from roialign_suite.implementations.records import FLOAT_DTYPES, HALF_DTYPES, Implementation


def _our_sums(dtype: torch.dtype, backward: bool) -> torch.dtype:
    """Where our kernels sum: the halves in float32; float32/float64 forwards in float64,
    their backwards in the input dtype (gradients accumulate in place)."""
    if dtype in HALF_DTYPES:
        return torch.float32
    return dtype if backward else torch.float64


def record() -> Implementation:
    """Ours: every dtype, coordinates in float64, the promises only our kernel makes."""
    return Implementation(
        "numba", impl.roi_align, ours=True, verified_by_default=True, dtypes=HALF_DTYPES + FLOAT_DTYPES,
        coordinates=torch.float64, sums=_our_sums, operator=torch.ops.roialign_suite.roi_align.default,
        in_roi_sweeps=True, multiscale_roi_align=impl.MultiScaleRoIAlign, packages=("numba",),
    )
