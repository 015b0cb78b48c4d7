"""The operator contract (``properties/contract.py``) on every implementation under test, ours and targets.

Cases are the usual generated ones and zero sizes (N, C, H, W, K = 0, alone
and together), in every dtype the implementation's record lists. Third-party
kernels run in a worker process (``properties/isolation.py``): a kernel that
kills its process is reported as a failure naming the case, the case is
written to the run's findings (``properties/findings.py``), and the run goes on.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roialign_suite.properties import contract, isolation
from roialign_suite.properties.findings import check_isolated, findings_for
from roialign_suite.properties.strategies import compile_cases, roi_align_cases, with_dtype, zero_size_cases

CASES = {"sizes": roi_align_cases(), "zero_sizes": zero_size_cases()}


@pytest.mark.parametrize("sizes", list(CASES))
@given(data=st.data())
def test_output_and_gradient_follow_the_contract(implementation, sizes, data, request):
    """Output and x.grad metadata; with N, C, H, W or K = 0 also their values (empty, or zeros),
    unless a third-party kernel refuses the case with an exception."""
    dtype = data.draw(st.sampled_from(implementation.dtypes), label="dtype")
    case = with_dtype(data.draw(CASES[sizes], label="case"), dtype)
    check_isolated(contract.check_output_contract, implementation, case, dtype, case.seed,
                   findings=findings_for(request), replayed=contract.replayed_property(implementation))


def test_integer_input_is_refused(implementation):
    if not isolation.is_isolated(implementation):
        contract.check_refuses_integer_input(implementation)
        return
    outcome = isolation.run_in_worker_of(implementation, contract.check_refuses_integer_input, implementation)
    outcome.result(f"{implementation.name} on an integer map")


@given(case=compile_cases(), data=st.data())
def test_compiled_matches_eager(implementation, case, data, request):
    """torch.compile (Inductor, dynamic shapes) of the target computes what the target computes; an
    isolated kernel is compiled in its worker (compiled here, the call into the worker is a graph
    break and the comparison eager against eager)."""
    dtype = data.draw(st.sampled_from(contract.compile_dtypes(implementation)), label="dtype")
    check_isolated(contract.check_compiled_matches_eager, implementation, case, dtype, findings=findings_for(request))


@given(case=st.one_of(*CASES.values()), data=st.data())
def test_operator_passes_opcheck(implementation, case, data, request):
    if implementation.operator is None:
        pytest.skip(f"{implementation.name} names no torch.library operator (its record's operator is None)")
    dtype = data.draw(st.sampled_from(implementation.dtypes), label="dtype")
    case = with_dtype(case, dtype)
    check_isolated(contract.check_opcheck, implementation, case, dtype, findings=findings_for(request),
                   replayed=contract.replayed_property(implementation))
