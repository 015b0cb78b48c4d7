"""The suite's pytest plugin: every option (one group, one prefix), the profile, and the session hooks.

Registered by entry point (``pytest11``), so an installed suite needs no
conftest: ``python -m pytest --pyargs roialign_suite.properties
--roialign-target=mypkg.ops:roi_align``. From a checkout that is not
installed, load it by name: ``python -m pytest -p roialign_suite.plugin``
(the entry point carries the same name, so both together load it once).

It stays out of other people's tests: it only parametrises and reports
tests defined in ``roialign_suite.properties`` and ``roialign_suite.benchmarks``
(:func:`is_suite_module`), and its fixtures are ``roialign_``-prefixed.

Options (``pytest --help``, group "roialign"):

- what is verified or timed: ``--roialign-target=MODULE:ATTR`` (repeatable),
  ``--roialign-device``, ``--roialign-implementation=NAME`` (repeatable, or
  comma-separated), ``--roialign-with-builtins``, ``--roialign-level-mapper=MODULE:ATTR``
  and ``--roialign-level-dialect``;
- how: ``--roialign-profile``, ``--roialign-max-examples``, ``--roialign-seed``,
  ``--roialign-corpus``;
- adoption: ``--roialign-xfails=FILE`` (expected failures with reasons),
  ``--roialign-strict-xfails``, ``--roialign-report=FILE.json``,
  ``--roialign-summary=FILE.md``;
- benchmarks: ``--roialign-quick``, ``--roialign-workload=NAME``,
  ``--roialign-bench-budget``, ``--roialign-bench-min-rounds``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

from roialign_suite import paths

PREFIX = "--roialign-"
DIALECTS = ("torchvision", "maskrcnn_benchmark", "detectron2")
MARKERS = (
    "cuda: needs a CUDA device; skipped with the reason when none is visible",
    "fuzz: end-to-end fuzz campaigns (about 3 minutes; deselect with -m 'not fuzz')",
)


def pytest_addoption(parser):
    group = parser.getgroup("roialign", "RoIAlign suite (roialign-suite)")

    def add(name, **kwargs):
        group.addoption(PREFIX + name, dest="roialign_" + name.replace("-", "_"), **kwargs)

    add("target", action="append", default=[], metavar="MODULE:ATTR",
        help="verify (and time) this roi_align (torchvision.ops.roi_align's signature) instead of the built-ins; "
        "repeatable; treated as third-party")
    add("device", default="cpu", metavar="DEVICE", help="device the targets run on (cpu or cuda); default cpu")
    add("implementation", action="append", default=[], metavar="NAME",
        help="built-in implementation(s) to verify or time (repeatable or comma-separated; default: "
        "the registry's defaults; see roialign_suite.implementations.registry)")
    add("with-builtins", action="store_true", default=False,
        help="with --roialign-target, also verify the built-in implementations")
    add("level-mapper", default=None, metavar="MODULE:ATTR",
        help="LevelMapper class under test (torchvision's constructor and call)")
    add("level-dialect", default="torchvision", choices=DIALECTS,
        help="the level formula the --roialign-level-mapper claims to follow (default torchvision)")
    add("profile", default=None, metavar="NAME",
        help="Hypothesis profile: ci (derandomized), dev, thorough (default: env ROIALIGN_PROFILE, "
        "else ci under CI, else dev)")
    add("max-examples", type=int, default=None, metavar="N", help="examples per property (overrides the profile)")
    add("seed", type=int, default=None, metavar="N",
        help="seed every property (a random, reproducible run; turns derandomization off)")
    add("corpus", default=os.environ.get("ROIALIGN_CORPUS"), metavar="DIR",
        help="replay this corpus folder instead of the shipped one (default: env ROIALIGN_CORPUS)")
    add("xfails", action="append", default=[], metavar="FILE",
        help="expected-failures file (test id or property[implementation] patterns, each with a reason); repeatable")
    add("strict-xfails", action="store_true", default=False,
        help="a listed expected failure that passes fails the run (default: reported only)")
    add("report", default=None, metavar="FILE.json",
        help="write every property x implementation outcome, worst error/bound and minimal example as JSON")
    add("summary", default=None, metavar="FILE.md", help="write a Markdown summary of the report")
    add("quick", action="store_true", default=False, help="benchmarks: toy workloads, one round (CI smoke run)")
    add("workload", action="append", default=[], metavar="NAME",
        help="benchmarks: workload(s) to time (repeatable or comma-separated; default all)")
    add("bench-budget", type=float, default=None, metavar="SECONDS",
        help="benchmarks: seconds of timed rounds per case (default 2)")
    add("bench-min-rounds", type=int, default=None, metavar="N", help="benchmarks: fewest timed rounds per case")


def names(values: List[str]) -> List[str]:
    """A repeatable option's values, each possibly comma-separated, flattened."""
    return [n.strip() for value in values for n in value.split(",") if n.strip()]


def is_suite_module(module, package: str) -> bool:
    """Whether ``module`` is a test module of ``roialign_suite.<package>`` (by file, so a checkout's
    ``properties/test_x.py`` collected by path counts as well as the installed one)."""
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return Path(path).resolve().parent == paths.package_dir(package)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    from roialign_suite.properties import profiles

    try:
        profiles.load(config.getoption("roialign_profile"), config.getoption("roialign_max_examples"),
                      config.getoption("roialign_seed"))
    except ValueError as error:
        raise pytest.UsageError(f"--roialign-profile / --roialign-max-examples: {error}") from None
    if config.getoption("roialign_seed") is not None and config.getoption("hypothesis_seed", None) is None:
        # Hypothesis's own plugin applies its --hypothesis-seed after this hook.
        config.option.hypothesis_seed = str(config.getoption("roialign_seed"))
    from roialign_suite.benchmarks import session as benchmark_session
    from roialign_suite.properties import expected_failures, report
    from roialign_suite.properties import session as property_session

    config.pluginmanager.register(property_session, "roialign_suite.properties.session")
    config.pluginmanager.register(benchmark_session, "roialign_suite.benchmarks.session")
    # Adoption: --roialign-xfails (expected failures) and --roialign-report / --roialign-summary.
    expected_failures.register(config)
    report.register(config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """The same derandomized examples however pytest is invoked.

    Hypothesis's pytest plugin adds the node id of a test with a ``parametrize`` marker (the
    box kinds, the dtypes, ...) to the digest that seeds derandomized runs (the ``ci``
    profile) and keys the example database; the node id depends on the rootdir
    (``properties/test_x.py::t[p]`` from a checkout, ``test_x.py::t[p]`` under ``roialign-suite
    check`` run elsewhere), so the same test would draw different examples and an
    expected-failures list made one way would not hold the other. For the suite's
    tests this replaces it, after Hypothesis's hook set it and before the test runs, by
    ``properties/FILE.py::NAME[PARAMS]`` (``benchmarks/...``): a checkout's node id, the
    same in a checkout and in an installed suite, from any directory.
    """
    inner = getattr(getattr(getattr(item, "obj", None), "hypothesis", None), "inner_test", None)
    if inner is None or getattr(inner, "_hypothesis_internal_add_digest", None) != item.nodeid.encode():
        return
    from roialign_suite.properties.expected_failures import item_test_id

    module = getattr(item, "module", None)
    for package in ("properties", "benchmarks"):
        if module is not None and is_suite_module(module, package):
            inner._hypothesis_internal_add_digest = f"{package}/{item_test_id(item)}".encode()
            return

