"""How a property reports its discrepancy to Hypothesis's targeted search.

``target_discrepancy(label, error, bound)`` hands ``max(error / bound)`` to
``hypothesis.target`` under ``label``: in the target phase Hypothesis mutates
the examples that scored highest, so a campaign climbs toward the boxes where
an implementation comes closest to (or past, above 1) its derived bound. The
fuzz runner reads the values back through observability for its summary.

Observers registered with :func:`observing` receive every value, inside a
Hypothesis test or not (corpus replay): the suite's report
(``roialign_suite/pytest_plugin/run_report.py``) records each test's worst ``error / bound`` this
way. Outside a Hypothesis test and with no observer it does nothing.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator, List

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


Observer = Callable[[str, float], None]
_observers: List[Observer] = []


@contextmanager
def observing(observer: Observer) -> Iterator[Observer]:
    """Within the block, every :func:`target_discrepancy` also calls ``observer(label, value)``."""
    _observers.append(observer)
    try:
        yield observer
    finally:
        _observers.remove(observer)


def target_discrepancy(label: str, error: torch.Tensor, bound: torch.Tensor) -> None:
    """Inside a Hypothesis test, ``hypothesis.target(max(error / bound), label=label)``; the value also
    goes to the :func:`observing` observers. A label already targeted in this test case keeps its
    first value (for the target; observers see every value)."""
    in_test = currently_in_test_context()
    if not in_test and not _observers:
        return
    value = discrepancy(error, bound)
    for observer in tuple(_observers):
        observer(label, value)
    if not in_test:
        return
    try:
        target(value, label=label)
    except InvalidArgument:  # same label twice in one test case: Hypothesis keeps one value per label
        pass
