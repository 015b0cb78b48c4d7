"""The operator contract (``properties/contract.py``) on every implementation under test, ours and targets.

Cases are the usual generated ones plus zero sizes (N, C, H, W, K = 0, alone
and together), in every dtype the implementation's record lists. Third-party
kernels run zero-size cases in a child process: a kernel that kills its
process there is reported as a failure naming the case, the case is written
to the run's findings (``properties/findings.py``), and the run goes on.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roialign_suite.properties import contract, isolation
from roialign_suite.properties.findings import check_isolated, findings_for
from roialign_suite.properties.strategies import compile_cases, roi_align_cases, with_dtype, zero_size_cases
from roialign_suite.properties.tolerances import UNIT_ROUNDOFF

CASES = st.one_of(zero_size_cases(), roi_align_cases())


def _replayed(implementation) -> str:
    """The corpus property that reruns what these checks run (the backward runs the forward first)."""
    return "backward_matches_reference" if implementation.differentiable else "forward_matches_reference"


def _check_output_contract(implementation, case, data, request):
    dtype = data.draw(st.sampled_from(implementation.dtypes), label="dtype")
    case = with_dtype(case, dtype)
    check_isolated(contract.check_output_contract, implementation, case, dtype, case.seed,
                   findings=findings_for(request), replayed=_replayed(implementation))


@given(case=roi_align_cases(), data=st.data())
def test_output_and_gradient_follow_the_contract(implementation, case, data, request):
    _check_output_contract(implementation, case, data, request)


@given(case=zero_size_cases(), data=st.data())
def test_zero_sizes_follow_the_contract(implementation, case, data, request):
    """N, C, H, W or K = 0: the definition's empty or zero output and zero gradient (or, third-party, a refusal)."""
    _check_output_contract(implementation, case, data, request)


def test_integer_input_is_refused(implementation):
    if implementation.ours:
        contract.check_refuses_integer_input(implementation)
        return
    outcome = isolation.run_isolated(contract.check_refuses_integer_input, implementation, device=implementation.device)
    outcome.result(f"{implementation.name} on an integer map")


@given(case=compile_cases(), data=st.data())
def test_compiled_matches_eager(implementation, case, data):
    """torch.compile (Inductor, dynamic shapes) of the target computes what the target computes."""
    # Bitwise for operators; otherwise the bound needs the dtype's unit roundoff.
    dtypes = [d for d in implementation.dtypes if implementation.operator is not None or d in UNIT_ROUNDOFF]
    contract.check_compiled_matches_eager(implementation, case, data.draw(st.sampled_from(dtypes), label="dtype"))


@given(case=CASES, data=st.data())
def test_operator_passes_opcheck(implementation, case, data, request):
    if implementation.operator is None:
        pytest.skip(f"{implementation.name} names no torch.library operator (its record's operator is None)")
    dtype = data.draw(st.sampled_from(implementation.dtypes), label="dtype")
    case = with_dtype(case, dtype)
    check_isolated(contract.check_opcheck, implementation, case, dtype, findings=findings_for(request),
                   replayed=_replayed(implementation))
