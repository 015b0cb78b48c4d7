"""The suite's pytest plugin: every option (one group, one prefix), the profile, and the session hooks.

Registered by entry point (``pytest11``), so an installed suite needs no
conftest: ``python -m pytest --pyargs roialign_suite.properties
--roialign-target=mypkg.ops:roi_align``. From a checkout that is not
installed, load it by name: ``python -m pytest -p roialign_suite.plugin``
(the entry point carries the same name, so both together load it once).

It is a guest in everyone else's pytest runs: its top-level imports are the
stdlib, pytest and :mod:`roialign_suite.options` (stdlib), and outside a suite
run (:func:`suite_run`: an option of ours, the suite's checkout as rootdir, or an
argument naming the suite's tests) it only declares its options. No profile,
no torch, Numba or Hypothesis import, no threading-layer choice, no hooks. In a
suite run it checks the options (one ``ERROR:`` line, pytest's usage status 4),
needs the ``test`` extra (one line naming it), loads the suite's Hypothesis
profile unless the user chose one (:func:`load_profile`), and registers the
sessions, which parametrise and report only the tests defined in
``roialign_suite.properties`` and ``roialign_suite.benchmarks``
(:func:`is_suite_module`); its fixtures are ``roialign_``-prefixed.

Options: ``pytest --help``, group "roialign"; each is declared once in :mod:`roialign_suite.options`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List, Optional

import pytest

from roialign_suite import options, paths

MARKERS = (
    "cuda: needs a CUDA device; skipped with the reason when none is visible",
    "fuzz: end-to-end fuzz campaigns (about 3 minutes; deselect with -m 'not fuzz')",
)
# What a suite run imports that the suite's plain dependencies do not bring: pyproject.toml's
# ``test`` extra, by import name.
TEST_EXTRA_MODULES = {"hypothesis": "Hypothesis", "pytest_benchmark": "pytest-benchmark", "matplotlib": "matplotlib"}
ACTIVE = pytest.StashKey[str]()  # why this run is a suite run
PROFILE = pytest.StashKey[str]()  # the Hypothesis profile in effect, and why


def pytest_addoption(parser):
    options.add_to_pytest(parser.getgroup("roialign", "RoIAlign suite (roialign-suite)"))


def names(values: List[str]) -> List[str]:
    """A repeatable option's values, each possibly comma-separated, flattened."""
    return [n for value in values for n in options.names(value)]


def suite_folder(package: str) -> Path:
    """The folder of ``roialign_suite.<package>``, found without importing it."""
    return Path(importlib.util.find_spec(f"roialign_suite.{package}").origin).resolve().parent


def is_suite_module(module, package: str) -> bool:
    """Whether ``module`` is a test module of ``roialign_suite.<package>`` (by file, so a checkout's
    ``properties/test_x.py`` collected by path counts as well as the installed one)."""
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return Path(path).resolve().parent == suite_folder(package)


def _checkout_root() -> Optional[Path]:
    """The suite's repository root when it runs from a checkout (``pyproject.toml`` and ``impl/``
    beside ``roialign_suite/``), else None; imports nothing."""
    root = suite_folder("properties").parent
    return root if (root / "pyproject.toml").is_file() and (root / "impl").is_dir() else None


def suite_run(config) -> Optional[str]:
    """Why this pytest run is a suite run, or None: the plugin then does nothing.

    The rule, decided once in ``pytest_configure``: an option of ours is given
    (``--roialign-*``), or the rootdir is the suite's own checkout, or an argument names
    the suite's tests (``--pyargs roialign_suite...``, or a path inside its ``properties/``
    or ``benchmarks/`` folder, or the installed ``roialign_suite`` folder). A suite test
    module collected any other way (through a parent folder of site-packages, say) runs
    without the suite's parametrisation and fails for want of its fixtures.
    """
    given = options.given_pytest(config)
    if given:
        return "option " + ", ".join(given)
    checkout = _checkout_root()
    if checkout is not None and Path(config.rootpath).resolve() == checkout:
        return "rootdir is the suite's checkout"
    ours = [suite_folder("properties"), suite_folder("benchmarks")]
    package = Path(importlib.util.find_spec("roialign_suite").origin).resolve().parent
    for arg in config.args:
        name = str(arg).split("::")[0]
        if name.startswith("roialign_suite"):
            return f"argument {arg}"
        path = (Path(config.invocation_params.dir) / name).resolve()
        if path == package or any(path == folder or folder in path.parents for folder in ours):
            return f"argument {arg}"
    return None


def missing_test_extra() -> List[str]:
    """The ``test`` extra's packages that are not installed."""
    return [label for module, label in TEST_EXTRA_MODULES.items() if importlib.util.find_spec(module) is None]


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
    config.stash[PROFILE] = load_profile(config)
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


def load_profile(config) -> str:
    """Load the suite's Hypothesis profile unless the user chose one; returns why the profile in
    effect is in effect (for the header).

    First match wins: ``--roialign-profile`` (ours, asked by name); ``--hypothesis-profile``
    (Hypothesis loads it after this hook); a profile a conftest loaded before the suite
    configured (kept; ``--roialign-max-examples``/``--roialign-seed`` derive from it); else
    env ``ROIALIGN_PROFILE``, ``ci`` under CI, ``dev``. Ours are registered in every case,
    so ``--hypothesis-profile ci`` names the suite's ``ci``.
    """
    from hypothesis import settings

    from roialign_suite.properties import profiles

    requested = config.getoption("roialign_profile")
    max_examples, seed = config.getoption("roialign_max_examples"), config.getoption("roialign_seed")
    current = settings.get_current_profile_name()
    if requested:
        profiles.load(requested, max_examples, seed)
        return "--roialign-profile"
    if config.getoption("hypothesis_profile", None):
        profiles.register()
        return "--hypothesis-profile"
    if current != "default":
        profiles.register()
        profiles.derive(current, max_examples, seed)
        return "loaded by a conftest before the suite (kept)"
    try:
        profiles.load(None, max_examples, seed)
    except ValueError as error:  # env ROIALIGN_PROFILE names no profile
        raise pytest.UsageError(f"env ROIALIGN_PROFILE: {error}") from None
    return profiles.why_chosen()
