"""The float64 reference's record (the oracle itself, ``roialign_suite.reference.roi_align``, lives in
``reference/``): the definition where a property runs it as an implementation (the adjoint identity)."""
from __future__ import annotations

import torch

from roialign_suite import reference
from roialign_suite.implementations.records import FLOAT_DTYPES, HALF_DTYPES, Implementation


def _float64_sums(dtype: torch.dtype, backward: bool) -> torch.dtype:
    return torch.float64


def record() -> Implementation:
    """The definition: coordinates and sums in float64 whatever the input dtype; never timed."""
    return Implementation(
        "reference", reference.roi_align, definition=True, not_timed="the float64 reference is a definition, too slow to time",
        dtypes=HALF_DTYPES + FLOAT_DTYPES, coordinates=torch.float64, sums=_float64_sums,
    )
