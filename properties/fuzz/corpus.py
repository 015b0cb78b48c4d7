"""Turn a shrunk failing example into replayable corpus cases, and mark accepted divergences.

A case is written in the format ``properties/test_corpus.py`` replays (see
``properties/corpus/README.md``): the :class:`RoIAlignCase` fields, the
``property`` it violates (one of :data:`REPLAYED`, re-checked here, so a
written case is known to fail its replay), the reference output
(``expected``), the implementation's output (``observed``, or
``observed_exception``), the assertion text (``violation``) and where it came
from (``found_by``). One file per (test, implementation, case), named by a
hash of the case, so two workers that shrink to the same case write one file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from roialign_suite.properties import isolation
from roialign_suite.properties.checks import case_for
from roialign_suite.properties.strategies import RoIAlignCase
from roialign_suite.properties.replay import (
    GRADIENT_PROPERTIES,
    PROPERTIES,
    case_from_entry,
    check_still_diverges,
    entry_fields,
)
from roialign_suite.properties.tolerances import forward_oracle
from roialign_suite.implementations import registry

# The corpus properties a finding is checked against (canonical names; test_corpus has aliases).
REPLAYED = ("forward_matches_reference", "backward_matches_reference", "adjoint_identity")
_CASE_FIELDS = tuple(f.name for f in dataclasses.fields(RoIAlignCase))
_REQUIRED_FIELDS = {"shape", "boxes", "output_size", "spatial_scale", "sampling_ratio", "aligned", "dtype"}
# Fields that say where a case came from, not what it is: left out of its hash.
_PROVENANCE = ("description", "found_by", "violation")


@dataclass(frozen=True)
class Violation:
    """A corpus property that ``implementation`` fails on a case (with the grad seed used)."""

    property: str
    message: str
    grad_seed: Optional[int] = None


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def case_from_arguments(arguments: Dict[str, object]) -> Optional[RoIAlignCase]:
    """The :class:`RoIAlignCase` among a test case's arguments, as Hypothesis's observability
    reports them (a dataclass becomes a dict of its fields), or None."""
    for value in arguments.values():
        if isinstance(value, dict) and _REQUIRED_FIELDS <= set(value):
            return RoIAlignCase(**{k: _tuples(v) for k, v in value.items() if k in _CASE_FIELDS})
    return None


def grad_seeds_from_arguments(arguments: Dict[str, object], case: RoIAlignCase) -> List[int]:
    """Upstream-gradient seeds to try: the test's ``grad_seed``, else the case's own seed
    (what the edge-case properties use), then 0."""
    seeds = [arguments["grad_seed"]] if isinstance(arguments.get("grad_seed"), int) else []
    return list(dict.fromkeys(seeds + [case.seed, 0]))


def find_violations(implementation, case: RoIAlignCase, grad_seeds: Sequence[int]) -> List[Violation]:
    """Every property of :data:`REPLAYED` that ``implementation`` fails on ``case`` (any exception counts)."""
    found = []
    for name in REPLAYED:
        gradient = name in GRADIENT_PROPERTIES
        if gradient and not getattr(implementation, "differentiable", True):
            continue
        for seed in (grad_seeds if gradient else [None]):
            entry = {} if seed is None else {"grad_seed": seed}
            try:
                PROPERTIES[name](implementation, case, entry)
            except Exception as failure:  # an implementation crashing on a valid case fails the replay too
                found.append(Violation(name, f"{type(failure).__name__}: {failure}", seed))
                break
    return found


def corpus_name(implementation) -> str:
    """The ``implementation`` field: a registry name replays on that entry; a ``--roialign-target``
    target is written as ``"*"`` (every implementation under test: the target itself when
    the replay runs with ``--roialign-target``, the built-ins on CI)."""
    return implementation.name if implementation.name in registry.by_name() else "*"


def _nested(tensor) -> list:
    return tensor.double().tolist()


def entries_for(implementation, case: RoIAlignCase, violations: Iterable[Violation], found_by: dict) -> List[dict]:
    """One corpus entry per violation, for the case as the property checks it on ``implementation``."""
    case = case_for(implementation, case)  # third-party kernels skip negative-grid boxes: store what is checked
    expected = _nested(forward_oracle(case).value)
    try:
        outcome = {"observed": _nested(case.run(implementation.roi_align))}
    except isolation.Crash as death:  # an isolated kernel died on it: pinned as the death it is
        outcome = death.outcome.observed() if death.outcome else {"observed_exception": {"type": "Crash"}}
    except Exception as error:
        outcome = {"observed_exception": {"type": type(error).__name__, "message_contains": str(error)}}
    entries = []
    for violation in violations:
        entry = {
            "description": f"Found by roialign-suite fuzz on {implementation.name} "
                           f"({found_by.get('test', '?')}): {violation.property} fails.",
            "property": violation.property,
            "implementation": corpus_name(implementation),
            **entry_fields(case),
        }
        if violation.grad_seed is not None:
            entry["grad_seed"] = violation.grad_seed
        entry.update(expected=expected, **outcome)
        entry["violation"] = violation.message
        entry["found_by"] = dict(found_by, implementation=implementation.name)
        entries.append(entry)
    return entries


def case_key(entries: Sequence[dict]) -> str:
    """A short hash of what the entries check (provenance left out)."""
    content = [{k: v for k, v in e.items() if k not in _PROVENANCE} for e in entries]
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def format_entries(entries: Sequence[dict]) -> str:
    """The corpus's layout: a list, one ``"key": compact value`` per line."""
    blocks = []
    for entry in entries:
        lines = [f"  {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in entry.items()]
        blocks.append("{\n" + ",\n".join(lines) + "\n}")
    return "[\n" + ",\n".join(blocks) + "\n]\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_")[:60]


def write_case(entries: Sequence[dict], directory: Path, test_name: str, implementation_name: str,
               key: Optional[str] = None) -> Path:
    """Write ``entries`` as ``<test>-<implementation>-<key>.json`` in ``directory`` (atomically);
    ``key`` defaults to :func:`case_key`, so the same case written twice gives the same file."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{_slug(test_name.removeprefix('test_'))}-{_slug(implementation_name)}-{key or case_key(entries)}"
    path = directory / f"{stem}.json"
    temporary = directory / f".{stem}.{os.getpid()}.tmp"
    temporary.write_text(format_entries(entries))
    os.replace(temporary, path)
    return path


# --- accepted divergences ---------------------------------------------------------------

def accept(path: Path, reason: str, implementation_name: Optional[str] = None) -> List[str]:
    """Mark every entry of ``path`` as a known divergence of ``implementation_name`` (default:
    the implementation that was found failing), with ``reason``; then check each still diverges
    exactly as recorded (``test_corpus.check_still_diverges``). Rewrites the file; returns the
    implementations marked. Ours cannot be accepted: its failures are bugs."""
    entries = json.loads(path.read_text())
    single = isinstance(entries, dict)
    entries = [entries] if single else entries
    known = registry.by_name()
    marked = []
    for entry in entries:
        name = implementation_name or entry.get("found_by", {}).get("implementation") or entry.get("implementation")
        implementation = known.get(name)
        if implementation is None and name and name.startswith("target:"):
            implementation = registry.target(name.removeprefix("target:").split("@")[0])
        if implementation is None:
            raise ValueError(f"{path}: implementation {name!r} is neither a registry name nor target:MODULE:ATTR")
        if implementation.ours:
            raise ValueError(f"{path}: {name} is ours; a failure of ours is a bug to fix, not a divergence to accept")
        if "observed" not in entry and "observed_exception" not in entry:
            raise ValueError(f"{path}: entry has no observed output to pin")
        entry["known_divergence"] = {"implementation": name, "reason": reason}
        if not implementation.unavailable:
            check_still_diverges(implementation, case_from_entry(entry), entry)
        marked.append(name)
    path.write_text(format_entries(entries))
    return marked
