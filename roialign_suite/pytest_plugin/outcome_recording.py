"""What the run report records per test while it runs: the worst ``error / bound`` and the arguments of failing calls.

:class:`Worst` observes every comparison (:func:`roialign_suite.properties.discrepancy.observing`);
:class:`FailingCalls` wraps ``test.hypothesis.inner_test`` (Hypothesis's own hook for
wrapping, used by pytest-trio; the examples drawn are unchanged) to remember the
arguments of the calls that raised; :class:`Draws` stands in for an ``st.data()``
argument in a written reproduction.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Optional, Tuple

from roialign_suite.properties import discrepancy


class Worst:
    """The largest ``error / bound`` handed to :func:`discrepancy.target_discrepancy`, and its label."""

    def __init__(self):
        self.value: Optional[float] = None
        self.label: Optional[str] = None

    def __call__(self, label: str, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            value = discrepancy.UNBOUNDED
        if self.value is None or value > self.value:
            self.value, self.label = value, label


class Draws:
    """Stands in for a property's ``st.data()`` argument: ``draw`` returns the recorded values in turn.

    A reported minimal example of a property that draws as it runs calls the property's body
    with ``data=Draws([...])``, the values spelled out.
    """

    def __init__(self, values):
        self.values = list(values)
        self._taken = 0

    def draw(self, strategy=None, label=None):
        if self._taken == len(self.values):
            raise LookupError(f"the property drew more than the {len(self.values)} recorded values")
        self._taken += 1
        return self.values[self._taken - 1]

    def __repr__(self) -> str:
        return f"Draws({self.values!r})"


class _RecordingData:
    """Hypothesis's ``data`` object, remembering what each ``draw`` returned."""

    def __init__(self, data):
        self._data = data
        self.values: List[Any] = []

    def draw(self, strategy, label=None):
        value = self._data.draw(strategy, label=label)
        self.values.append(value)
        return value

    def __repr__(self) -> str:
        return repr(self._data)


class FailingCalls:
    """While active, wraps ``test.hypothesis.inner_test`` to remember ``(exception, arguments)`` of the
    calls that raised (the last few: the final replays of the minimal examples come last); an
    ``st.data()`` argument is remembered as the ``Draws`` it made."""

    KEEP = 64

    def __init__(self, function):
        self.function = function
        self.calls: List[Tuple[BaseException, Dict[str, Any]]] = []
        handle = getattr(function, "hypothesis", None)
        self.handle = handle if handle is not None and hasattr(handle, "inner_test") else None
        self.original = None

    def __enter__(self):
        if self.handle is None:
            return self
        original = self.original = self.handle.inner_test
        try:
            import inspect

            signature = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None

        from hypothesis.strategies import DataObject

        @functools.wraps(original)
        def remembering(*args, **kwargs):
            kwargs = {name: _RecordingData(value) if isinstance(value, DataObject) else value
                      for name, value in kwargs.items()}
            try:
                return original(*args, **kwargs)
            except BaseException as error:
                try:
                    arguments = dict(signature.bind(*args, **kwargs).arguments) if signature else dict(kwargs)
                except TypeError:
                    arguments = dict(kwargs)
                arguments = {name: Draws(value.values) if isinstance(value, _RecordingData) else value
                             for name, value in arguments.items()}
                self.calls.append((error, arguments))
                del self.calls[:-self.KEEP]
                raise

        self.handle.inner_test = remembering
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.inner_test = self.original
        return False

    def arguments_of(self, error: BaseException) -> Optional[Dict[str, Any]]:
        for raised, arguments in reversed(self.calls):
            if raised is error:
                return arguments
        return None
