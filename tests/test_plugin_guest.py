"""The installed suite is a good guest in a kernel author's own pytest runs: with the wheel in their
environment (its ``pytest11`` entry point loads ``roialign_suite.pytest_plugin`` in every pytest process),
a run of their tests keeps their Hypothesis profile, imports neither torch nor Numba nor the suite's
Hypothesis profiles, and sets no threading layer; without the ``[test]`` extra (no Hypothesis) their
plain run still passes, and only a suite run stops, with one line naming the extra.

The venvs hold the wheel built once per session (``tests/conftest.py``, ``tests/installed_wheel.py``).
"""
from __future__ import annotations

import json
import textwrap

import pytest

from installed_wheel import TEST_EXTRA_ENTRIES, install, run

USER_MAX_EXAMPLES = 7  # the user's profile; the suite's are 30 (ci), 40 (dev), 1000 (thorough)

PROBE = '''
import json, os, sys

RECORD = os.path.join(os.path.dirname(__file__), "record.json")


def record(**fields):
    seen = json.load(open(RECORD)) if os.path.exists(RECORD) else {}
    seen.update(fields)
    json.dump(seen, open(RECORD, "w"))


def test_modules(request):
    record(plugin_loaded=request.config.pluginmanager.hasplugin("roialign_suite.pytest_plugin"),
           imported=sorted(m for m in ("torch", "numba", "roialign_suite.impl", "roialign_suite.properties.profiles")
                           if m in sys.modules),
           threading_layer=os.environ.get("NUMBA_THREADING_LAYER"))
'''


@pytest.fixture(scope="module")
def without_test_extra(tmp_path_factory, suite_wheel):
    """A venv holding the wheel and its plain dependencies, without the ``test`` extra (pytest is the user's)."""
    return install(tmp_path_factory.mktemp("without-test-extra"), suite_wheel, left_out=TEST_EXTRA_ENTRIES)


def user_run(python, env, project):
    """The user's plain ``python -m pytest`` in their project; ``(process, what their tests recorded)``."""
    env = {k: v for k, v in env.items() if k not in ("NUMBA_THREADING_LAYER", "CI", "ROIALIGN_PROFILE")}
    done = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, env, timeout=300)
    record = project / "record.json"
    return done, (json.loads(record.read_text()) if record.is_file() else {})


def test_a_users_run_keeps_their_profile_and_imports_nothing_of_ours(installed, tmp_path):
    """A conftest that loads its own profile, a ``@given`` test: their max_examples stays in effect,
    and torch, Numba and the suite's profiles stay unimported while the plugin is loaded."""
    python, _, env = installed
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f'''
        from hypothesis import settings

        settings.register_profile("theirs", max_examples={USER_MAX_EXAMPLES})
        settings.load_profile("theirs")
    '''))
    (tmp_path / "test_theirs.py").write_text(PROBE + textwrap.dedent('''
        from hypothesis import given, settings, strategies as st


        @given(st.integers())
        def test_property(x):
            record(max_examples=settings().max_examples, profile=settings.get_current_profile_name())
    '''))
    done, seen = user_run(python, env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert seen["plugin_loaded"], "the entry point did not load the plugin: this test would prove nothing"
    assert (seen["profile"], seen["max_examples"]) == ("theirs", USER_MAX_EXAMPLES), seen
    assert seen["imported"] == [], seen
    assert seen["threading_layer"] is None, seen


def test_without_the_test_extra_a_plain_run_passes(without_test_extra, tmp_path):
    """No Hypothesis in the environment: the user's plain tests run and pass (no INTERNALERROR)."""
    python, _, env = without_test_extra
    (tmp_path / "test_plain.py").write_text(PROBE)
    done, seen = user_run(python, env, tmp_path)
    assert done.returncode == 0 and "INTERNALERROR" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert seen["plugin_loaded"] and seen["imported"] == [], seen


def test_without_the_test_extra_a_suite_run_names_it(without_test_extra, tmp_path):
    """A suite run in that environment stops with one line naming the extra to install."""
    python, _, env = without_test_extra
    done = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "roialign_suite.properties"],
               tmp_path, env, timeout=300)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'roialign-suite[test]'" in lines[0] and "Hypothesis" in lines[0], lines
