"""Pytest plugin for one round of one fuzz worker (``-p properties.fuzz.worker_hooks``; the runner loads it).

It registers the ``fuzz`` Hypothesis profile (selected with
``--hypothesis-profile fuzz``): random, ``deadline=None``, the runner's
``max_examples``, phases explicit/reuse/generate/target/shrink, and the shared
example database (a directory, or Redis for a ``redis://`` URL). During the
run it

* keeps only Hypothesis tests, minus those the campaign already saw fail
  (``ROIALIGN_FUZZ_RETIRED``), and starts none after ``ROIALIGN_FUZZ_DEADLINE``;
* counts every test case through Hypothesis's observability callbacks:
  examples per test, and the largest value of each ``hypothesis.target`` label
  (the properties target ``error / bound``), saved to ``ROIALIGN_FUZZ_STATS``
  every few seconds;
* turns each shrunk failing example into a corpus case in
  ``ROIALIGN_FUZZ_CORPUS`` (``properties.fuzz.corpus``), or records why it
  cannot be one, with Hypothesis's reproduction.
"""
from __future__ import annotations

import datetime
import json
import os
import random
import time
from pathlib import Path
from typing import List, Optional

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, is_hypothesis_test, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.internal.observability import add_observability_callback, remove_observability_callback

from roialign_suite.properties.fuzz.stats import Finding, PropertyStats, Snapshot

PROFILE = "fuzz"
STATS_ENV = "ROIALIGN_FUZZ_STATS"
DEFAULT_DATABASE = ".hypothesis/examples"  # Hypothesis's own default: dev runs replay what fuzzing found
SAVE_EVERY_S = 2.0
MINIMAL_FAILING = "minimal failing test case"
PHASES = {"explicit": Phase.explicit, "reuse": Phase.reuse, "generate": Phase.generate, "target": Phase.target,
          "shrink": Phase.shrink}
FUZZ_PHASES = "explicit,reuse,generate,target,shrink"
REPLAY_PHASES = "reuse,shrink"  # harvest: replay the database's failures, generate nothing


def database(spec: str) -> ExampleDatabase:
    """``redis://host:port/db`` (Hypothesis's Redis database, shared by many machines) or a directory."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(spec))
    return DirectoryBasedExampleDatabase(spec)


def register_profile(environ=os.environ) -> None:
    phases = [PHASES[name] for name in environ.get("ROIALIGN_FUZZ_PHASES", FUZZ_PHASES).split(",") if name]
    settings.register_profile(
        PROFILE,
        derandomize=False,
        deadline=None,
        max_examples=int(environ.get("ROIALIGN_FUZZ_MAX_EXAMPLES", "100")),
        phases=phases,
        database=database(environ.get("ROIALIGN_FUZZ_DB", DEFAULT_DATABASE)),
        print_blob=True,
        suppress_health_check=list(HealthCheck),  # a long hunt must not stop on a slow or filtered draw
    )


register_profile()


class FuzzRound:
    """State of one pytest process: the snapshot, the running item, its failing examples."""

    def __init__(self, environ=os.environ):
        self.stats_path = Path(environ[STATS_ENV])
        self.corpus = Path(environ["ROIALIGN_FUZZ_CORPUS"]) if environ.get("ROIALIGN_FUZZ_CORPUS") else None
        self.deadline = float(environ.get("ROIALIGN_FUZZ_DEADLINE", "inf"))
        retired = environ.get("ROIALIGN_FUZZ_RETIRED")
        self.retired = set(json.loads(Path(retired).read_text())) if retired and Path(retired).exists() else set()
        self.snapshot = Snapshot(
            worker=int(environ.get("ROIALIGN_FUZZ_WORKER", "0")),
            round=int(environ.get("ROIALIGN_FUZZ_ROUND", "0")),
            seed=int(environ.get("ROIALIGN_FUZZ_SEED", "0")),
            max_examples=settings.get_profile(PROFILE).max_examples,
        )
        self.item = None
        self.failing: List = []
        self.saved_at = 0.0

    # --- counting -------------------------------------------------------------------
    def stats_for(self, item) -> PropertyStats:
        implementation = _implementation_of(item)
        name = implementation.name if implementation is not None else "-"
        return self.snapshot.properties.setdefault(item.nodeid, PropertyStats(item.originalname, name))

    def observe(self, observation) -> None:
        if observation.type != "test_case" or self.item is None:
            return
        if observation.how_generated == MINIMAL_FAILING:
            self.failing.append(observation)
            return
        self.stats_for(self.item).observe(observation.status, observation.features, observation.representation)
        if time.monotonic() - self.saved_at > SAVE_EVERY_S:
            self.save()

    def save(self, done: bool = False) -> None:
        self.snapshot.done = done
        self.snapshot.save(self.stats_path)
        self.saved_at = time.monotonic()

    # --- failures ---------------------------------------------------------------------
    def record_failure(self, item, report) -> None:
        self.stats_for(item).failures += 1
        observations, self.failing = self.failing, []
        if not observations:
            self.snapshot.findings.append(Finding(
                item.nodeid, self.stats_for(item).implementation, str(report.longrepr)[-2000:],
                not_pinned="the failure came with no falsifying example (not a Hypothesis failure)"))
            return
        for observation in observations:
            self.snapshot.findings.append(self.finding(item, observation))

    def finding(self, item, observation) -> Finding:
        from roialign_suite.properties.fuzz import corpus  # imports the property suite: only once something failed

        implementation = _implementation_of(item)
        message = _exception_text(observation.metadata.traceback)
        blob = observation.metadata.reproduction_decorator or ""
        finding = Finding(item.nodeid, implementation.name if implementation else "-", message,
                          reproduction=f"{blob}\n{observation.representation}".strip())
        case = corpus.case_from_arguments(observation.arguments)
        if implementation is None or case is None:
            finding.not_pinned = "the property's arguments hold no implementation and RoIAlignCase"
            return finding
        if self.corpus is None:
            finding.not_pinned = "no corpus directory given"
            return finding
        try:
            violations = corpus.find_violations(
                implementation, case, corpus.grad_seeds_from_arguments(observation.arguments, case))
            if not violations:
                finding.not_pinned = (f"none of the replayed properties {corpus.REPLAYED} fails on the shrunk "
                                      "case (this property has no corpus replay)")
                return finding
            found_by = {
                "tool": "roialign-suite fuzz", "test": item.nodeid, "worker": self.snapshot.worker,
                "round": self.snapshot.round, "seed": self.snapshot.seed, "hypothesis": hypothesis.__version__,
                "date": datetime.date.today().isoformat(), "reproduce_failure": blob,
            }
            entries = corpus.entries_for(implementation, case, violations, found_by)
            path = corpus.write_case(entries, self.corpus, item.originalname, implementation.name)
        except Exception as error:  # the finding must be reported even if writing it fails
            finding.not_pinned = f"writing the corpus case failed: {type(error).__name__}: {error}"
            return finding
        finding.corpus_file = str(path)
        finding.properties = [v.property for v in violations]
        return finding


def _implementation_of(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("implementation") or params.get("our_implementation")


def _exception_text(traceback: Optional[str]) -> str:
    """The exception line(s) at the end of a formatted traceback."""
    if not traceback:
        return ""
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].startswith(" ") and ("Error" in lines[i] or "Exception" in lines[i]):
            return "\n".join(lines[i:])[:2000]
    return lines[-1][:2000]


_round: Optional[FuzzRound] = None


def seed_hypothesis(seed: int) -> None:
    """Draw every test's random seed from ``Random(seed)``, so a round is reproducible.

    Not ``--hypothesis-seed``: a forced seed turns the example database off, and
    sharing it is the point. This sets the generator Hypothesis itself seeds
    from OS entropy on first use (``hypothesis.core.threadlocal``); if a
    Hypothesis version moves it, rounds are simply unseeded."""
    from hypothesis import core

    local = getattr(core, "threadlocal", None)
    if local is not None and hasattr(local, "_hypothesis_global_random"):
        local._hypothesis_global_random = random.Random(seed)


def pytest_configure(config):
    global _round
    if not os.environ.get(STATS_ENV):
        raise pytest.UsageError(f"roialign_suite.properties.fuzz.worker_hooks is run by python -m roialign_suite.properties.fuzz (needs env {STATS_ENV})")
    _round = FuzzRound()
    if _round.corpus is not None:  # an isolated kernel's deaths are findings of the campaign too
        from roialign_suite.properties import isolation

        isolation.configure(findings=_round.corpus)
    seed_hypothesis(_round.snapshot.seed)
    add_observability_callback(_round.observe)
    _round.save()


def pytest_unconfigure(config):
    if _round is not None:
        remove_observability_callback(_round.observe)
        _round.save(done=True)


def pytest_collection_modifyitems(config, items):
    """Keep only Hypothesis tests not yet seen failing in this campaign."""
    kept, dropped = [], []
    for item in items:
        fuzzable = is_hypothesis_test(getattr(item, "obj", None)) and item.nodeid not in _round.retired
        (kept if fuzzable else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_setup(item):
    if time.time() > _round.deadline:
        pytest.skip("fuzz budget spent")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _round.item, _round.failing = item, []
    start = time.monotonic()
    try:
        yield
    finally:
        _round.stats_for(item).seconds += time.monotonic() - start
        _round.item = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        _round.record_failure(item, report)
        _round.save()
