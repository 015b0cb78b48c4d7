"""The replay corpus (``properties/corpus/``, format in its README): loading its
cases and replaying them.

``load_corpus`` reads every ``*.json`` under a folder (one case or a list per
file); ``case_from_entry`` turns an entry into a :class:`RoIAlignCase` and
``entry_fields`` a case into an entry's fields; ``PROPERTIES`` maps a
property name an entry may name to its check (``replay_property`` runs it);
``check_still_diverges`` replays a recorded known divergence, a crash or a hang
in a child process (``properties.isolation``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from roialign_suite.properties import isolation
from roialign_suite.properties.checks import (
    check_adjoint_identity,
    check_backward_matches_reference,
    check_forward_matches_reference,
    grad_output_for,
    input_gradient,
)
from roialign_suite.properties.strategies import DTYPES, RoIAlignCase
from roialign_suite.properties.tolerances import assert_within, forward_oracle, forward_tolerance

# The shipped corpus; --roialign-corpus (or env ROIALIGN_CORPUS) replays another folder
# (tests/test_fuzz.py: a temporary corpus the fuzzer wrote).
CORPUS = Path(__file__).parent / "corpus"


def corpus_root(config=None) -> Path:
    """The corpus folder a run replays: ``--roialign-corpus``, else the shipped one."""
    chosen = (config.getoption("roialign_corpus") if config is not None else None) or os.environ.get("ROIALIGN_CORPUS")
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
# The corpus properties that run the backward too.
GRADIENT_PROPERTIES = ("backward_matches_reference", "adjoint_identity")

Entry = Tuple[str, dict]


def replay_property(implementation, case: RoIAlignCase, name: str, entry: dict) -> None:
    """Check the corpus property ``name`` (a key of :data:`PROPERTIES`) of ``entry`` on ``implementation``."""
    if name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r} (known: {sorted(PROPERTIES)})")
    PROPERTIES[name](implementation, case, entry)


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


def call_raw(implementation, case: RoIAlignCase, backward: bool) -> None:
    """Run ``implementation`` on ``case`` as it is (no box taken out, nothing compared), then its
    backward if ``backward``: what a recorded death replays."""
    features = case.features().requires_grad_(backward)
    out = case.run(implementation.roi_align, features=features)
    if backward:
        out.sum().backward()


def entry_fields(case: RoIAlignCase) -> dict:
    """The corpus fields describing ``case`` (what :func:`case_from_entry` reads back)."""
    features = [list(v) for v in case.values] if case.values is not None else {"seed": case.seed,
                                                                              "shape": list(case.shape)}
    return {
        "dtype": case.dtype,
        "layout": case.layout,
        "features": features,
        "boxes": [list(b) for b in case.boxes],
        "output_size": list(case.output_size),
        "spatial_scale": case.spatial_scale,
        "sampling_ratio": case.sampling_ratio,
        "aligned": case.aligned,
    }


def diverging_implementation(entry: dict):
    divergence = entry.get("known_divergence")
    if not divergence:
        return None
    return divergence.get("implementation", entry.get("implementation"))


def check_still_diverges(implementation, case: RoIAlignCase, entry: dict) -> None:
    """The recorded divergence is reproduced: the same death (``observed_crash``: the call, and
    the backward for a gradient property, run in its worker process on the case as it is, dies
    with the same signal or exit status;
    ``observed_timeout_s``: it still hangs that long; or, where ``observed_exception`` is recorded
    beside the death, raises that instead), an input gradient NaN at exactly the
    recorded ``[n, c, y, x]`` (``observed_gradient_nan``, upstream gradient from ``grad_seed``),
    the same exception (``observed_exception``), all NaN (``observed_all_nan``), or the same ``observed`` output
    (within ``tolerance.observed_atol``, default the implementation's bound) still farther
    than ``tolerance.diverges_by_more_than`` (default that bound) from ``expected``."""
    if entry.get("observed_crash") or entry.get("observed_timeout_s"):
        timeout = float(entry.get("observed_timeout_s") or isolation.settings.timeout_s)
        backward = entry.get("property", "forward_matches_reference") in GRADIENT_PROPERTIES
        outcome = isolation.run_in_worker_of(implementation, call_raw, implementation, case, backward, timeout=timeout)
        recorded = {key: entry[key] for key in ("observed_crash", "observed_timeout_s") if entry.get(key)}
        instead = entry.get("observed_exception")  # or, recorded beside the death, this refusal
        if instead and not outcome.died and outcome.error is not None:
            assert type(outcome.error).__name__ == instead["type"] and instead.get("message_contains", "") in str(
                outcome.error), f"{implementation.name} neither dies as recorded nor raises {instead}: it {outcome.describe()}"
            return
        assert outcome.died and outcome.observed() == recorded, (
            f"{implementation.name} no longer dies as recorded ({entry.get('observed_crash') or 'a hang'}): "
            f"it {outcome.describe()}"
        )
        return
    nan_at = entry.get("observed_gradient_nan")
    if nan_at is not None:
        grad = input_gradient(implementation, case, grad_output_for(case, entry.get("grad_seed", 0)))
        assert grad.isnan().nonzero().tolist() == nan_at, (
            f"the input gradient is NaN at {grad.isnan().nonzero().tolist()}, recorded {nan_at}")
        return
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
