"""A crashing (or hanging) kernel is a finding: reported with its input, written to the corpus, and the run goes on.

Two ways a death is met. A call through an isolated record
(``isolation.isolated``) that dies writes that call's input
(:func:`record_call_death`). :func:`check_isolated` runs a whole check of one
implementation on one case in the kernel's worker where its record is
isolated (the operator contract, the corpus replay: they inspect what the
kernel itself returns). When the worker dies, the case is written as a corpus entry (format:
``properties/corpus/README.md``; ``observed_crash: {"signal": "SIGSEGV"}`` or
``observed_timeout_s``) and the check fails with :class:`isolation.Crash`
naming the implementation, the input and the file; the other tests run on.

Where: :func:`findings_dir`: the run's ``--roialign-corpus`` folder when one
is given (so the next run with it replays the finding), else
``roialign-findings/`` under the working directory. Never the shipped
corpus: an installed suite may not be able to write it, and what is pinned
there is curated (move a finding to ``properties/corpus/`` to pin it, or to
``known_divergences/`` with a ``known_divergence`` to accept it).

The file is named after the test and the implementation, and each death
overwrites it: Hypothesis shrinks a failure and reruns the minimal example
last, so the file ends holding that one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from roialign_suite import paths
from roialign_suite.properties import isolation
from roialign_suite.properties.fuzz.corpus import corpus_name, write_case
from roialign_suite.properties.replay import entry_fields
from roialign_suite.properties.strategies import RoIAlignCase, case_of_tensors, layout_of
from roialign_suite.properties.tolerances import forward_oracle

FINDINGS_FOLDER = "roialign-findings"


def findings_dir(config=None) -> Path:
    """Where a run writes its findings: ``--roialign-corpus`` if given, else ``./roialign-findings``."""
    chosen = (config.getoption("roialign_corpus") if config is not None else None) or os.environ.get("ROIALIGN_CORPUS")
    return Path(chosen) if chosen else paths.work_dir() / FINDINGS_FOLDER


def findings_for(request) -> "Findings":
    """The :class:`Findings` of the test of pytest's ``request`` (taken as an argument rather than
    a fixture of our own: Hypothesis refuses function-scoped fixtures in a ``@given`` test)."""
    return Findings(findings_dir(request.config), request.node.name)


@dataclass(frozen=True)
class Findings:
    """Where one test writes what it finds (``directory``), and the test's name (``test``)."""

    directory: Path
    test: str

    def record_death(self, implementation, case: RoIAlignCase, outcome: isolation.Outcome, replayed: str) -> Path:
        """Write ``case`` as a corpus entry: ``implementation`` died (``outcome``) in the corpus
        property ``replayed``; ``expected`` is the reference's output."""
        entry = {
            "description": f"Found by the suite's crash isolation: {implementation.name} {outcome.describe()} "
                           f"({self.test}).",
            "property": replayed,
            "implementation": corpus_name(implementation),
            **entry_fields(case),
        }
        entry["expected"] = forward_oracle(case).value.tolist()
        entry.update(outcome.observed())
        entry["found_by"] = {"test": self.test, "implementation": implementation.name}
        test_function = self.test.split("[")[0].removeprefix("test_")  # the implementation is named on its own
        return write_case([entry], self.directory, f"crash-{test_function}", implementation.name, key="latest")


def current_test() -> str:
    """The name of the pytest test running now (``test_x[params]``), or ``"call"`` outside pytest."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "")
    return running.split("::")[-1].split(" ")[0] if running else "call"


def _rows(boxes) -> torch.Tensor:
    """``boxes`` (``Tensor[K, 5]`` or per-image ``Tensor[L, 4]``) as float64 rows, unchecked: the
    input of a crash may be one the kernel should have refused."""
    if isinstance(boxes, torch.Tensor):
        return boxes.detach().double().reshape(-1, 5)
    return torch.cat([torch.zeros(0, 5, dtype=torch.float64)] + [
        torch.cat([torch.full((len(b), 1), float(i), dtype=torch.float64), b.detach().double().reshape(-1, 4)], 1)
        for i, b in enumerate(boxes)])


def record_call_death(name: str, input: torch.Tensor, boxes, params: tuple, outcome: isolation.Outcome,
                      direction: str) -> Path:
    """Write the call of implementation ``name`` that died (``outcome``) in its ``direction``
    (``forward`` / ``backward``) to the run's findings folder; the file's path."""
    from roialign_suite.implementations.registry import resolve

    rois = _rows(boxes)
    case = case_of_tensors(input, rois, *params).replace(layout=layout_of(input))
    if input.numel():  # an empty map has no values to keep (and nested lists lose its shape)
        case = case.replace(values=input.double().tolist())
    replayed = "backward_matches_reference" if direction == "backward" else "forward_matches_reference"
    directory = isolation.settings.findings or findings_dir()
    return Findings(directory, current_test()).record_death(resolve(name), case, outcome, replayed)


def check_isolated(check: Callable, implementation, case: RoIAlignCase, *args, findings: Optional[Findings] = None,
                   replayed: str = "forward_matches_reference") -> None:
    """``check(implementation, case, *args)``, in the implementation's worker where its record is
    isolated (``isolation.is_isolated``), else here; what it raises is re-raised here. If the
    worker dies, :class:`isolation.Crash` names the case, and the corpus entry written to
    ``findings`` (replaying the corpus property ``replayed``)."""
    if not isolation.is_isolated(implementation):
        check(implementation, case, *args)
        return
    outcome = isolation.run_in_worker_of(implementation, check, implementation, case, *args)
    if not outcome.died:
        outcome.result()
        return
    written = "" if findings is None else (
        f"; corpus entry written to {findings.record_death(implementation, case, outcome, replayed)}")
    raise isolation.Crash(f"{implementation.name} {outcome.describe()} on case = {case!r}{written}", outcome)
