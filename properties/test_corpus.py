"""Replay the pinned cases of ``properties/corpus/`` (format: ``properties/corpus/README.md``).

Every ``*.json`` under the corpus (any depth; one case or a list of cases per
file) becomes tests: the reference still gives the recorded ``expected``; each
named implementation still keeps the named property, or, where the case
records a ``known_divergence`` for it, still diverges in exactly the recorded
way (so a fix, or a new way of being wrong, shows up).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from roialign_suite.properties.conftest import implementations_under_test
from roialign_suite.properties.strategies import DTYPES, RoIAlignCase
from roialign_suite.properties.test_differential import check_backward_matches_reference, check_forward_matches_reference
from roialign_suite.properties.test_gradients import check_adjoint_identity
from roialign_suite.properties.tolerances import (
    arithmetic,
    assert_within,
    forward_oracle,
    forward_tolerance,
)
from roialign_suite.reference import registry

# ROIALIGN_CORPUS replays another folder (tests/test_fuzz.py: a temporary corpus the fuzzer wrote).
CORPUS = Path(os.environ.get("ROIALIGN_CORPUS") or Path(__file__).parent / "corpus")

# property name -> check(implementation, case, entry); aliases keep other writers' names.
PROPERTIES = {
    "forward_matches_reference": lambda impl, case, entry: check_forward_matches_reference(impl, case),
    "backward_matches_reference": lambda impl, case, entry: check_backward_matches_reference(
        impl, case, entry.get("grad_seed", 0)
    ),
    "adjoint_identity": lambda impl, case, entry: check_adjoint_identity(impl, case, entry.get("grad_seed", 0)),
}
PROPERTIES["float64_matches_reference"] = PROPERTIES["float32_matches_reference"] = PROPERTIES[
    "forward_matches_reference"
]

Entry = Tuple[str, dict]


def load_corpus(root: Path = CORPUS) -> List[Entry]:
    """``(id, case dict)`` for every case under ``root``; id is the file path (plus ``[i]`` in a list)."""
    entries = []
    for path in sorted(root.rglob("*.json")):
        name = str(path.relative_to(root))
        data = json.loads(path.read_text())
        if isinstance(data, list):
            entries += [(f"{name}[{i}]", item) for i, item in enumerate(data)]
        else:
            entries.append((name, data))
    return entries


def case_from_entry(entry: dict) -> RoIAlignCase:
    """The :class:`RoIAlignCase` a corpus entry describes (torchvision's defaults for absent parameters)."""
    features = entry["features"]
    size = entry.get("output_size", 1)
    common = dict(
        boxes=tuple(tuple(b) for b in entry["boxes"]),
        output_size=tuple(size) if isinstance(size, list) else (size, size),
        spatial_scale=float(entry.get("spatial_scale", 1.0)),
        sampling_ratio=int(entry.get("sampling_ratio", -1)),
        aligned=bool(entry.get("aligned", False)),
        dtype=entry.get("dtype", "float64"),
        layout=entry.get("layout", "contiguous"),
    )
    if isinstance(features, dict):
        return RoIAlignCase(shape=tuple(features["shape"]), seed=int(features.get("seed", 0)), **common)
    return RoIAlignCase(shape=(), values=features, **common)


def diverging_implementation(entry: dict):
    divergence = entry.get("known_divergence")
    if not divergence:
        return None
    return divergence.get("implementation", entry.get("implementation"))


def _implementations_for(entry: dict, config) -> List:
    """Registry entries named by the case (``"*"`` or absent: every implementation under test)."""
    named = entry.get("implementation", "*")
    if named == "*":
        return implementations_under_test(config)
    names = [named] if isinstance(named, str) else named
    known = registry.by_name()
    return [known.get(n, n) for n in names]


def pytest_generate_tests(metafunc):
    entries = load_corpus()
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
    for impl in implementations_under_test(config) + registry.builtin():
        if impl.name == name:
            return impl
    raise LookupError(name)


def test_reference_gives_the_recorded_expected(corpus_entry):
    """The oracle still computes what the case records (so the corpus pins the reference too)."""
    case = case_from_entry(corpus_entry)
    oracle = forward_oracle(case)
    expected = torch.tensor(corpus_entry["expected"], dtype=torch.float64).reshape(oracle.value.shape)
    bound = forward_tolerance(case, oracle, arithmetic(True, torch.float64))
    assert_within(oracle.value, expected, bound, "reference vs recorded expected")


def test_replay(corpus_entry, implementation_name, request):
    implementation = _resolve(implementation_name, request.config)
    case = case_from_entry(corpus_entry)
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
        PROPERTIES[prop](implementation, case, corpus_entry)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{description}") from None


def check_still_diverges(implementation, case: RoIAlignCase, entry: dict) -> None:
    """The recorded divergence is reproduced: the same exception (``observed_exception``),
    all NaN (``observed_all_nan``), or the same ``observed`` output (within
    ``tolerance.observed_atol``, default the implementation's bound) still farther than
    ``tolerance.diverges_by_more_than`` (default that bound) from ``expected``."""
    raised = entry.get("observed_exception")
    if raised:
        with pytest.raises(Exception) as info:
            case.run(implementation.roi_align)
        assert type(info.value).__name__ == raised["type"], f"now raises {type(info.value).__name__}: {info.value}"
        assert raised.get("message_contains", "") in str(info.value)
        return
    out = case.run(implementation.roi_align).double()
    if entry.get("observed_all_nan"):
        assert bool(out.isnan().all()), f"no longer all NaN: {out.flatten().tolist()}"
        return
    oracle = forward_oracle(case)
    expected = oracle.value
    if entry.get("expected") is not None:
        expected = torch.tensor(entry["expected"], dtype=torch.float64).reshape(out.shape)
    arith = arithmetic(implementation.ours, DTYPES[case.dtype])
    bound = forward_tolerance(case, oracle, arith)
    tolerance: Dict = entry.get("tolerance") or {}
    observed = torch.tensor(entry["observed"], dtype=torch.float64).reshape(out.shape)
    atol = tolerance.get("observed_atol")
    assert_within(out, observed, bound if atol is None else torch.full_like(out, atol), "output vs recorded observed")
    diverges_by = tolerance.get("diverges_by_more_than")
    limit = bound if diverges_by is None else torch.full_like(out, diverges_by)
    assert bool(((out - expected).abs() > limit).any()), (
        f"{implementation.name} no longer diverges on this case: drop its known_divergence"
    )
