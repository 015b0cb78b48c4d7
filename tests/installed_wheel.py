"""A wheel built from this checkout, installed in a fresh virtual environment, as a kernel author
installs the suite (``tests/test_installed_suite.py``, ``tests/test_plugin_guest.py``; the wheel is
built once per session, ``tests/conftest.py``).

The fresh environment holds the suite only from the wheel. Its dependencies (torch and the rest,
gigabytes) are borrowed from the environment running the tests through a ``.pth`` file naming a
folder of links to them, the suite itself and its editable-install hooks left out, so neither the
checkout nor this environment's install of the suite can stand in for the wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900
# Left out of the borrowed dependencies: this environment's own install of the suite.
NOT_BORROWED = ("roialign_suite", "__editable__", "_roialign")
# The ``test`` extra's packages as they lie in site-packages (Hypothesis's pytest plugin included),
# left out of an environment that installs the suite without ``[test]``.
TEST_EXTRA_ENTRIES = ("hypothesis", "_hypothesis", "pytest_benchmark", "matplotlib", "mpl_toolkits")


def run(command, cwd, env=None, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def tracked_sources(dest: Path) -> Path:
    """The checkout's tracked files copied to ``dest`` (a build there leaves nothing in the checkout)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def borrowed_dependencies(dest: Path, left_out: Sequence[str] = ()) -> Path:
    """A folder of links to this environment's installed packages, less the suite itself and
    the entries whose names start with one of ``left_out``."""
    dest.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(NOT_BORROWED + tuple(left_out)) and not entry.name.endswith(".pth"):
            (dest / entry.name).symlink_to(entry)
    return dest


def installed_version(name: str):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def build_wheel(root: Path) -> Path:
    """The suite's wheel, built from a copy of the checkout's tracked files under ``root``."""
    source = tracked_sources(root / "src")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist",
                 source], cwd=root)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (root / "dist").glob("roialign_suite-*.whl")
    return wheel


def install(root: Path, wheel: Path, left_out: Sequence[str] = ()) -> Tuple[Path, Path, dict]:
    """``(python, roialign-suite command, environment)`` of a fresh venv under ``root`` holding
    ``wheel``, its dependencies borrowed less ``left_out``."""
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(str(borrowed_dependencies(root / "dependencies", left_out)) + "\n")
    # tbb's library lies outside site-packages: install its wheels for real (small), so it loads as for a user.
    packages = [wheel] + [f"{name}=={v}" for name in ("tbb", "tcmlib") if (v := installed_version(name))]
    done = run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", *packages], cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return python, venv / "bin" / "roialign-suite", env
