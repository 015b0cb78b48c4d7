"""Where the suite's files are, where its runs write, and how a run starts a pytest child.

The suite runs the same from a checkout (the subpackages are the repository's
top-level folders) and from an installed wheel (they are folders of
``roialign_suite``), from any working directory. What ships with it (the
corpus, the gate's thresholds) is found next to its modules; what a run
writes (benchmark history, reports, fuzz campaigns and findings) goes under
the working directory, never into the installed package.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import List, Sequence

# The subpackages of roialign_suite: in a checkout the repository's top-level folders, in a
# wheel folders of the package (pyproject.toml's package-dir maps the same names).
SUBPACKAGES = ("impl", "reference", "implementations", "properties", "benchmarks")


def package_dir(subpackage: str) -> Path:
    """The folder of ``roialign_suite.<subpackage>`` (one of :data:`SUBPACKAGES`)."""
    return Path(importlib.import_module(f"roialign_suite.{subpackage}").__file__).resolve().parent


def import_root() -> Path:
    """The folder that must be on ``sys.path`` for ``import roialign_suite`` (a checkout's root, or site-packages)."""
    return Path(importlib.import_module("roialign_suite").__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The repository root when running from a checkout (its ``pyproject.toml`` beside ``impl/``), else None."""
    root = package_dir("impl").parent
    return root if (root / "pyproject.toml").is_file() and (root / "roialign_suite").is_dir() else None


def work_dir() -> Path:
    """Where runs write their outputs: the working directory."""
    return Path.cwd()


def child_environment(base=None) -> dict:
    """``base`` (default ``os.environ``) with :func:`import_root` first on ``PYTHONPATH``, so a child
    process imports this same copy of the suite (a checkout that is not installed included)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(import_root()), env.get("PYTHONPATH", "")) if p)
    return env


def pytest_command(paths: Sequence[Path], *args: str) -> List[str]:
    """``python -m pytest`` on suite files with this suite's plugin loaded by name (so it also works
    uninstalled) and the working directory as rootdir (caches and outputs land there, not in
    site-packages)."""
    return [sys.executable, "-m", "pytest", "-p", "roialign_suite.pytest_plugin", f"--rootdir={work_dir()}",
            *(str(p) for p in paths), *args]
