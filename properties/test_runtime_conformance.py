"""Forward-only runtimes (ONNX Runtime, OpenVINO, ...) against the float64 reference, outside their known divergences.

``--roialign-implementation onnxruntime`` runs every generic property on a
runtime and shows where it diverges; this module instead pins what each
runtime does get right, one runtime x dtype per test, with the forward check
and bounds of ``properties/checks.py`` (forward only: the runtimes have no
gradient). Each known divergence is cut out of the drawn cases by the rule in
the runtime's record (``implementations/``, e.g. ``onnx_runtimes.py``) and replayed exactly
from ``properties/corpus/known_divergences/`` (tests/test_runtimes.py);
docs/conformance.md is the resulting matrix.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roialign_suite.properties.strategies import roi_align_cases
from roialign_suite.properties.checks import check_forward_matches_reference, outside_divergences
from roialign_suite.implementations import registry

# The built-ins that are forward only: the runtimes (their records say ``differentiable=False``).
RUNTIME_NAMES = [i.name for i in registry.builtin() if not i.differentiable]


def runtime(name: str) -> registry.Implementation:
    entry = registry.by_name()[name]
    if entry.unavailable:
        pytest.skip(f"{name}: {entry.unavailable}")
    return entry


def runtime_dtype_params():
    """(runtime, dtype) pairs; a pair a divergence concerns wholly is a strict expected failure."""
    params = []
    for name in RUNTIME_NAMES:
        for dtype in (str(d).removeprefix("torch.") for d in registry.by_name()[name].dtypes):
            whole = [d for d in registry.by_name()[name].divergences if d.whole_dtype == dtype]
            marks = [pytest.mark.xfail(strict=True, raises=AssertionError,
                                       reason=f"known divergence: {d.reason} (corpus: {d.corpus})") for d in whole]
            params.append(pytest.param(name, dtype, marks=marks, id=f"{name}-{dtype}"))
    return params


@pytest.mark.parametrize("name, dtype", runtime_dtype_params())
@given(data=st.data())
def test_forward_matches_reference_outside_known_divergences(name, dtype, data):
    entry = runtime(name)
    wholly = any(d.whole_dtype == dtype for d in entry.divergences)
    # Case-wide divergences are drawn around, unless one covers the whole dtype (then the
    # strict xfail above expects the failure).
    cases = roi_align_cases(dtype_names=(dtype,))
    if not wholly:
        cases = cases.filter(lambda c: not entry.diverges_on(c))
    case = data.draw(cases, label="case")
    check_forward_matches_reference(entry, outside_divergences(entry, case))
