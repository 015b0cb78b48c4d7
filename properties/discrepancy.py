"""How a property reports its discrepancy to Hypothesis's targeted search.

``target_discrepancy(label, error, bound)`` hands ``max(error / bound)`` to
``hypothesis.target`` under ``label``: in the target phase Hypothesis mutates
the examples that scored highest, so a campaign climbs toward the boxes where
an implementation comes closest to (or past, above 1) its derived bound. The
fuzz runner reads the values back through observability for its summary.
Outside a Hypothesis test (corpus replay, unit tests) it does nothing.
"""
from __future__ import annotations

import sys

import torch
from hypothesis import target
from hypothesis.control import currently_in_test_context
from hypothesis.errors import InvalidArgument

# error / bound when the bound is 0 and the error is not, or the output is not finite.
UNBOUNDED = sys.float_info.max


def discrepancy(error: torch.Tensor, bound: torch.Tensor) -> float:
    """``max(error / bound)`` over the elements (0 for none); :data:`UNBOUNDED` where the bound is
    exceeded with a zero bound or the error is not finite."""
    if error.numel() == 0:
        return 0.0
    error, bound = error.double(), bound.double().expand_as(error)
    if not bool(torch.isfinite(error).all()):
        return UNBOUNDED
    positive = bound > 0
    if bool(((~positive) & (error > 0)).any()):
        return UNBOUNDED
    ratios = torch.where(positive, error / torch.where(positive, bound, torch.ones_like(bound)),
                         torch.zeros_like(error))
    return float(ratios.max())


def target_discrepancy(label: str, error: torch.Tensor, bound: torch.Tensor) -> None:
    """Inside a Hypothesis test, ``hypothesis.target(max(error / bound), label=label)``.
    A label already targeted in this test case keeps its first value."""
    if not currently_in_test_context():
        return
    try:
        target(discrepancy(error, bound), label=label)
    except InvalidArgument:  # same label twice in one test case: Hypothesis keeps one value per label
        pass
