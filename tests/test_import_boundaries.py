"""The benchmarks and the implementations' records load neither Hypothesis nor pytest.

``benchmarks/`` times kernels and ``implementations/`` describes them; a user's
benchmark run or an agreement table should not pull in the property suite's
test machinery. Checked in a fresh interpreter (what an earlier test imported
would hide it), importing the modules one at a time, so a failure names the
first module that brought the forbidden package in.
"""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The benchmark modules a benchmark run or a report loads (their pytest plugin, roialign_suite/pytest_plugin/benchmark_parametrization.py, is pytest's).
BENCHMARK_MODULES = tuple(f"roialign_suite.benchmarks.{m}" for m in (
    "workloads", "runners", "figures", "accuracy", "maskrcnn", "performance_report", "gate", "ecosystem_bench", "track",
    "step_detection", "dashboard"))
IMPLEMENTATION_MODULES = tuple(
    f"roialign_suite.implementations.{m.name}" for m in pkgutil.iter_modules([str(REPO / "implementations")])
)
FORBIDDEN = ("hypothesis", "pytest", "_pytest")

_CHILD = """
import importlib, json, sys
forbidden, modules = json.loads(sys.argv[1])
first = {}
for name in modules:
    importlib.import_module(name)
    for package in forbidden:
        if package in sys.modules and package not in first:
            first[package] = name
print(json.dumps(first))
"""


def first_importers(modules) -> dict:
    """``{forbidden package: the first of modules whose import loaded it}`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([FORBIDDEN, list(modules)])],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_implementation_modules_are_found():
    assert {"roialign_suite.implementations.records", "roialign_suite.implementations.registry"} <= set(IMPLEMENTATION_MODULES)


def test_benchmarks_and_implementations_load_no_test_machinery():
    assert first_importers(IMPLEMENTATION_MODULES + BENCHMARK_MODULES) == {}


def test_the_check_sees_a_module_that_loads_hypothesis():
    # The checker itself: the property suite's tolerances module does load Hypothesis.
    assert first_importers(("roialign_suite.properties.tolerances",)).get("hypothesis") == \
        "roialign_suite.properties.tolerances"
