"""The suite's pytest plugin, in one package: this module is its entry point (``pytest11``).

Registered by entry point, so an installed suite needs no conftest:
``python -m pytest --pyargs roialign_suite.properties --roialign-target=mypkg.ops:roi_align``.
From a checkout that is not installed, load it by name: ``python -m pytest -p
roialign_suite.pytest_plugin`` (the entry point carries the same name, so both
together load it once).

It is a guest in everyone else's pytest runs: this module and :mod:`.activation`
import only the stdlib, pytest and :mod:`roialign_suite.options`, and outside a
suite run (:func:`.activation.suite_run`: an option of ours, the suite's checkout
as rootdir, or an argument naming the suite's tests) the plugin only declares its
options. No profile, no torch, Numba or Hypothesis import, no threading-layer
choice, no hooks. In a suite run it checks the options (one ``ERROR:`` line,
pytest's usage status 4), needs the ``test`` extra (one line naming it), loads
the suite's Hypothesis profile unless the user chose one
(:mod:`.profile_choice`), and registers its parts, each a module named by its job:

- :mod:`.property_parametrization`: the implementations under test, as the
  properties' ``implementation`` parameter; the run's header;
- :mod:`.benchmark_parametrization`: workload x implementation for the
  benchmarks, their ``roialign_`` fixtures and end-of-run table;
- :mod:`.expected_failures`: ``--roialign-xfails`` files, matched to tests;
- :mod:`.run_report`: ``--roialign-report`` / ``--roialign-summary``, gathered from
  :mod:`.outcome_recording` (worst error/bound, failing calls' arguments),
  :mod:`.hypothesis_output` (examples read from Hypothesis's notes and text),
  :mod:`.reproduction_code` (the minimal example as a script) and written with
  :mod:`.summary_markdown`.

The parts parametrise and report only the tests defined in ``roialign_suite.properties``
and ``roialign_suite.benchmarks`` (:func:`.activation.is_suite_module`).
Options: ``pytest --help``, group "roialign"; each is declared once in :mod:`roialign_suite.options`.
"""
from __future__ import annotations

import pytest

from roialign_suite import options
from roialign_suite.pytest_plugin.activation import ACTIVE, PROFILE, missing_test_extra, suite_run

MARKERS = (
    "cuda: needs a CUDA device; skipped with the reason when none is visible",
    "fuzz: end-to-end fuzz campaigns (about 3 minutes; deselect with -m 'not fuzz')",
)


def pytest_addoption(parser):
    options.add_to_pytest(parser.getgroup("roialign", "RoIAlign suite (roialign-suite)"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """In a suite run only (:func:`suite_run`): check the options and the ``test`` extra, load the
    profile, register the sessions and the adoption plugins. Elsewhere nothing at all."""
    why = suite_run(config)
    if why is None:
        return
    config.stash[ACTIVE] = why
    missing = missing_test_extra()
    if missing:
        raise pytest.UsageError(f"roialign-suite needs {', '.join(missing)} to run its tests: {options.TEST_EXTRA}")
    options.validate_pytest(config, pytest.UsageError)
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    from roialign_suite.pytest_plugin.profile_choice import load_profile

    config.stash[PROFILE] = load_profile(config)
    if config.getoption("roialign_seed") is not None and config.getoption("hypothesis_seed", None) is None:
        # Hypothesis's own plugin applies its --hypothesis-seed after this hook.
        config.option.hypothesis_seed = str(config.getoption("roialign_seed"))
    from roialign_suite.pytest_plugin import (
        benchmark_parametrization,
        expected_failures,
        property_parametrization,
        run_report,
    )

    config.pluginmanager.register(property_parametrization, property_parametrization.__name__)
    config.pluginmanager.register(benchmark_parametrization, benchmark_parametrization.__name__)
    # Adoption: --roialign-xfails (expected failures) and --roialign-report / --roialign-summary.
    expected_failures.register(config)
    run_report.register(config)
