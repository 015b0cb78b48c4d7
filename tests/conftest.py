"""Fixtures shared by test modules: the suite's wheel and a venv holding it, built once per session."""
import pytest

from installed_wheel import build_wheel, install


@pytest.fixture(scope="session")
def suite_wheel(tmp_path_factory):
    """The suite's wheel, built from this checkout's tracked files."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed(tmp_path_factory, suite_wheel):
    """``(python, roialign-suite command, environment)`` of a fresh venv holding the wheel and every
    dependency (the ``test`` extra included)."""
    return install(tmp_path_factory.mktemp("installed"), suite_wheel)
