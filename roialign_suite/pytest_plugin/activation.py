"""When the plugin acts: :func:`suite_run` decides, once per pytest run, whether this run is a suite run.

Imports only the stdlib, pytest and :mod:`roialign_suite.options`: it runs in every
pytest process of an environment the suite is installed in.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List, Optional

import pytest

from roialign_suite import options

# What a suite run imports that the suite's plain dependencies do not bring: pyproject.toml's
# ``test`` extra, by import name.
TEST_EXTRA_MODULES = {"hypothesis": "Hypothesis", "pytest_benchmark": "pytest-benchmark", "matplotlib": "matplotlib"}
ACTIVE = pytest.StashKey[str]()  # why this run is a suite run
PROFILE = pytest.StashKey[str]()  # the Hypothesis profile in effect, and why


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
