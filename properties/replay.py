"""The replay corpus (``properties/corpus/``, format in its README): loading its
cases and replaying them.

``load_corpus`` reads every ``*.json`` under a folder (one case or a list per
file); ``case_from_entry`` turns an entry into a :class:`RoIAlignCase`;
``PROPERTIES`` maps a property name an entry may name to its check;
``check_still_diverges`` replays a recorded known divergence.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from roialign_suite.properties.checks import (
    check_adjoint_identity,
    check_backward_matches_reference,
    check_forward_matches_reference,
)
from roialign_suite.properties.strategies import DTYPES, RoIAlignCase
from roialign_suite.properties.tolerances import assert_within, forward_oracle, forward_tolerance

# The shipped corpus; --roialign-corpus (or env ROIALIGN_CORPUS) replays another folder
# (tests/test_fuzz.py: a temporary corpus the fuzzer wrote).
CORPUS = Path(__file__).parent / "corpus"


def corpus_root(config=None) -> Path:
    """The corpus folder a run replays: ``--roialign-corpus``, else the shipped one."""
    chosen = config.getoption("roialign_corpus") if config is not None else os.environ.get("ROIALIGN_CORPUS")
    return Path(chosen) if chosen else CORPUS

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
    arith = implementation.arithmetic(DTYPES[case.dtype])
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
