"""Replay the pinned cases of ``properties/corpus/`` (format: ``properties/corpus/README.md``).

Every ``*.json`` under the corpus (any depth; one case or a list of cases per
file) becomes tests: the reference still gives the recorded ``expected``; each
named implementation still keeps the named property, or, where the case
records a ``known_divergence`` for it, still diverges in exactly the recorded
way (so a fix, or a new way of being wrong, shows up).
"""
from __future__ import annotations

from typing import List

import pytest
import torch

from roialign_suite.implementations import registry
from roialign_suite.properties import isolation
from roialign_suite.pytest_plugin.property_parametrization import implementations_under_test
from roialign_suite.properties.replay import (
    PROPERTIES,
    corpus_root,
    case_from_entry,
    check_still_diverges,
    diverging_implementation,
    load_corpus,
    replay_property,
)
from roialign_suite.properties.findings import check_isolated
from roialign_suite.properties.strategies import DTYPES
from roialign_suite.properties.tolerances import FLOAT64, assert_within, forward_oracle, forward_tolerance



def _implementations_for(entry: dict, config) -> List:
    """Registry entries named by the case (``"*"`` or absent: every implementation under test).
    A run narrowed to some kernels (``--roialign-target``, ``--roialign-implementation``)
    replays what is under test only: the cases pinned for a built-in it does not check are
    left out (their built-in's runs replay them). A default run replays every named built-in
    that is installed."""
    named = entry.get("implementation", "*")
    if named == "*":
        return implementations_under_test(config)
    names = [named] if isinstance(named, str) else named
    if config.getoption("roialign_target") or config.getoption("roialign_implementation"):
        under_test = {i.name for i in implementations_under_test(config)}
        names = [n for n in names if n in under_test]
    known = registry.by_name()
    return [known.get(n, n) for n in names]


def pytest_generate_tests(metafunc):
    entries = load_corpus(corpus_root(metafunc.config))
    if "corpus_entry" in metafunc.fixturenames and "implementation_name" not in metafunc.fixturenames:
        with_expected = [(i, e) for i, e in entries if e.get("expected") is not None]
        metafunc.parametrize("corpus_entry", [e for _, e in with_expected], ids=[i for i, _ in with_expected])
    if "implementation_name" in metafunc.fixturenames:
        params = []
        for entry_id, entry in entries:
            for impl in _implementations_for(entry, metafunc.config):
                name = impl if isinstance(impl, str) else impl.name
                marks = []
                if isinstance(impl, str):
                    marks = [pytest.mark.skip(reason=f"{name!r} is not in the registry")]
                elif impl.unavailable:
                    marks = [pytest.mark.skip(reason=f"{name}: {impl.unavailable}")]
                params.append(pytest.param(entry, name, marks=marks, id=f"{entry_id}-{name}"))
        metafunc.parametrize("corpus_entry, implementation_name", params)


def _resolve(name: str, config):
    """The record called ``name``: the one under test, else the built-in (isolated as the run chooses)."""
    for impl in implementations_under_test(config):
        if impl.name == name:
            return impl
    impl = registry.resolve(name)
    return isolation.isolated(impl) if isolation.isolates(impl) else impl


def test_reference_gives_the_recorded_expected(corpus_entry):
    """The oracle still computes what the case records (so the corpus pins the reference too)."""
    case = case_from_entry(corpus_entry)
    oracle = forward_oracle(case)
    expected = torch.tensor(corpus_entry["expected"], dtype=torch.float64).reshape(oracle.value.shape)
    bound = forward_tolerance(case, oracle, FLOAT64)
    assert_within(oracle.value, expected, bound, "reference vs recorded expected")


def test_replay(corpus_entry, implementation_name, request):
    """Third-party kernels replay in their worker process (``properties.findings``): a crash
    fails this replay instead of ending the run."""
    implementation = _resolve(implementation_name, request.config)
    case = case_from_entry(corpus_entry)
    if DTYPES[case.dtype] not in implementation.dtypes:  # as the properties draw only the record's dtypes
        pytest.skip(f"{implementation.name} takes {', '.join(map(str, implementation.dtypes))}; the case is {case.dtype}")
    description = f"{corpus_entry.get('description', '')}\ncase = {case!r}"
    if diverging_implementation(corpus_entry) == implementation.name:
        check_still_diverges(implementation, case, corpus_entry)
        return
    prop = corpus_entry.get("property", "forward_matches_reference")
    if prop not in PROPERTIES:
        pytest.fail(f"unknown property {prop!r} (known: {sorted(PROPERTIES)})")
    if "backward" in prop or "adjoint" in prop:
        if not getattr(implementation, "differentiable", True):
            pytest.skip(f"{implementation.name} is forward-only (differentiable=False)")
    try:
        check_isolated(replay_property, implementation, case, prop, corpus_entry)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{description}") from None


