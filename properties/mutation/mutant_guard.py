"""Pytest plugin for mutant runs (``-p properties.mutation.mutant_guard``).

Refuses to run the suite (usage error, exit status 4) unless ``impl`` and
``reference`` are imported from the mutated copy named by env
``ROIALIGN_MUTANT_ROOT``: a suite run on the unmutated checkout would report
every mutant as surviving. Prints where they came from in the header.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from roialign_suite.properties.mutation.smoke import shadowing_problem

ROOT_ENV = "ROIALIGN_MUTANT_ROOT"


def pytest_configure(config):
    root = os.environ.get(ROOT_ENV)
    if not root:
        raise pytest.UsageError(f"roialign_suite.properties.mutation.mutant_guard needs env {ROOT_ENV} (the mutated copy)")
    problem = shadowing_problem(Path(root))
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header(config):
    from roialign_suite import impl

    return [f"mutant {os.environ.get('ROIALIGN_MUTANT_ID', '?')}: impl from {impl.__file__}"]
