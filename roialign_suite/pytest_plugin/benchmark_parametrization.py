"""The benchmarks' parametrisation (the plugin registers it in a suite run)
(workload x implementation), the ``roialign_``-prefixed fixtures, and the end-of-run summary.

Options (declared in :mod:`roialign_suite.options`; besides pytest-benchmark's own ``--benchmark-*``):
``--roialign-quick`` / ``ROIALIGN_BENCH_QUICK=1`` (toy-size workloads, one round unless
``--roialign-bench-min-rounds``: the CI smoke run); ``--roialign-target=MODULE:ATTR`` and ``--roialign-device`` (time a plug-in target too);
``--roialign-implementation`` / ``--roialign-workload`` (a subset, exact names; targets are
always kept; a model workload runs only with the implementations it names,
``ModelWorkload.implementations``); ``--roialign-bench-budget`` /
``--roialign-bench-min-rounds`` (time per case).
"""
from __future__ import annotations

import os

import pytest

from roialign_suite.benchmarks import figures
from roialign_suite.implementations.naming import is_target
from roialign_suite.benchmarks.runners import candidates
from roialign_suite.benchmarks.workloads import all_model_workloads, all_workloads
from roialign_suite.pytest_plugin.activation import is_suite_module, names

RECORDED = pytest.StashKey[list]()


def is_quick(config) -> bool:
    return bool(config.getoption("roialign_quick")) or os.environ.get("ROIALIGN_BENCH_QUICK", "") not in ("", "0")


def _selected(config, workloads):
    """``workloads`` less those ``--roialign-workload`` leaves out, quick-sized under ``--roialign-quick``."""
    wanted = names(config.getoption("roialign_workload"))
    unknown = set(wanted) - {w.name for w in all_workloads() + all_model_workloads()}
    if unknown:
        raise pytest.UsageError(f"--roialign-workload: unknown names {sorted(unknown)}")
    chosen = [w for w in workloads if not wanted or w.name in wanted]
    return [w.quick() for w in chosen] if is_quick(config) else chosen


def selected_workloads(config):
    return _selected(config, all_workloads())


def selected_model_cases(config):
    """``(model workload, pooler implementation)`` pairs: each workload with the implementations it names."""
    wanted = names(config.getoption("roialign_implementation"))
    selected_candidates(config)  # rejects unknown --roialign-implementation names
    return [(w, name) for w in _selected(config, all_model_workloads()) for name in w.implementations
            if not wanted or name in wanted]


def selected_candidates(config):
    wanted = names(config.getoption("roialign_implementation"))
    found = candidates(config.getoption("roialign_target"), config.getoption("roialign_device"))
    # Plug-in targets were asked for by name, so the filter keeps them.
    chosen = [c for c in found if not wanted or c.name in wanted or is_target(c.name)]
    unknown = set(wanted) - {c.name for c in chosen}
    if unknown:
        raise pytest.UsageError(f"--roialign-implementation: unknown names {sorted(unknown)}; known: {[c.name for c in found]}")
    return chosen


def pytest_generate_tests(metafunc):
    if not is_suite_module(metafunc.module, "benchmarks"):
        return
    config = metafunc.config
    if "case" in metafunc.fixturenames:
        chosen = selected_candidates(config)
        cases = [(w, c) for w in selected_workloads(config) for c in chosen if w.times(c.name)]
        metafunc.parametrize("case", cases, ids=[f"{w.name}-{c.name}" for w, c in cases])
    if "model_case" in metafunc.fixturenames:
        cases = selected_model_cases(config)
        metafunc.parametrize("model_case", cases, ids=[f"{w.name}-{name}" for w, name in cases])


@pytest.fixture(scope="session")
def roialign_timing_plan(request):
    """``(budget_s, min_rounds, max_rounds)`` for each case."""
    config = request.config
    budget = config.getoption("roialign_bench_budget")
    min_rounds = config.getoption("roialign_bench_min_rounds")
    if is_quick(config):
        rounds = 1 if min_rounds is None else min_rounds
        return 0.0, rounds, rounds
    # One untimed call first, then as many rounds as fit the budget: a slow
    # case (torchvision's backward, seconds per call) gets a single round.
    return (2.0 if budget is None else budget), (1 if min_rounds is None else min_rounds), 15


@pytest.fixture(scope="session")
def roialign_jit_dtypes(request):
    """The dtypes whose kernel variants the first-call measurement compiles: all, or float32 alone in a
    quick run (a pipeline check; each dtype adds about 15 s of cold compile, twice)."""
    from roialign_suite.benchmarks.jit import DTYPE_NAMES

    return ("float32",) if is_quick(request.config) else DTYPE_NAMES


@pytest.fixture
def roialign_record(request):
    """Register a ``benchmark`` fixture whose results the end-of-run summary reads."""
    recorded = request.config.stash.setdefault(RECORDED, [])
    return recorded.append


def _timed(config):
    """The recorded fixtures' pytest-benchmark metadata (none when timing is disabled)."""
    return [b.stats for b in config.stash.get(RECORDED, []) if b.stats]


def _records(config):
    return [m.as_dict(include_data=False) for m in _timed(config)]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    # Runs before pytest-benchmark saves the run: add speedups and rates to extra_info.
    records = _records(session.config)
    derived = figures.derived_info(figures.throughput_results(records))
    derived.update(figures.model_derived_info(figures.model_results(records)))
    for metadata in _timed(session.config):
        key = (metadata.extra_info.get("workload"), metadata.extra_info.get("implementation"))
        metadata.extra_info.update(derived.get(key, {}))
    yield


def pytest_terminal_summary(terminalreporter, config):
    records = _records(config)
    throughput = figures.throughput_results(records)
    rows = figures.summary_rows(throughput)
    if rows:
        terminalreporter.write_sep("=", "RoIAlign throughput (median; speedup measured in this run)")
        terminalreporter.write_line(figures.text_table(figures.header(), [figures.row_cells(r) for r in rows]))
    models = figures.model_rows(figures.model_results(records))
    if models:
        terminalreporter.write_sep("=", "Mask R-CNN with each MultiScaleRoIAlign (median; share of the step in RoI pooling)")
        terminalreporter.write_line(figures.text_table(figures.model_header(), [figures.model_cells(r) for r in models]))
    sweeps = figures.roi_sweep_rows(throughput)
    if sweeps:
        terminalreporter.write_sep("=", "RoI-count sweeps, forward (median; speedup measured in this run)")
        terminalreporter.write_line(figures.text_table(figures.sweep_header(), [figures.sweep_cells(r) for r in sweeps]))
    pairs = figures.pair_rows(throughput)
    if pairs:
        terminalreporter.write_sep("=", "dtype pairs: speedup over the same workload in float32 (same run)")
        terminalreporter.write_line(figures.text_table(figures.PAIR_HEADER, [figures.pair_cells(p) for p in pairs]))
    jit = figures.jit_records(records)
    if jit:
        terminalreporter.write_sep("=", "first call: import + Numba JIT compile, in a fresh process")
        terminalreporter.write_line(figures.text_table(figures.JIT_HEADER, [figures.jit_cells(j) for j in jit]))


@pytest.fixture(scope="session")
def roialign_jit_warm():
    """Compile (or load from cache) our Numba kernels before anything is timed."""
    from roialign_suite.benchmarks.jit import first_call

    first_call()
