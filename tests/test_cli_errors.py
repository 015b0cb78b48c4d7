"""A bad option value is one line on stderr naming the option and the problem, never a traceback:
``roialign-suite`` exits 2 (argparse's usage status), the plugin's ``--roialign-*`` options exit with
pytest's usage status (4). Both use the one validator of each option (``roialign_suite.options``).

Each case runs in a child process from an empty directory, as a user meets it.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from roialign_suite import cli, paths

TIMEOUT_S = 300

# (option, bad value, a fragment the one line must hold). The targets name modules of the suite
# itself (stdlib-only: no torch import, so each case takes a second).
BAD_VALUES = [
    ("target", "no_such_module:roi_align", "cannot import module 'no_such_module'"),
    ("target", "roialign_suite.paths.import_root", "did you mean 'roialign_suite.paths:import_root'"),
    ("target", "roialign_suite.paths:no_such_function", "has no attribute 'no_such_function'"),
    ("target", "roialign_suite:__version__", "not callable"),
    ("level-mapper", "roialign_suite.paths", "expected MODULE:ATTR"),
    ("level-dialect", "no_such_dialect", "unknown dialect 'no_such_dialect'"),
    ("profile", "no_such_profile", "unknown profile 'no_such_profile'"),
    ("implementation", "no_such_kernel", "unknown implementation 'no_such_kernel'"),
    ("device", "tpu", "unknown device 'tpu'"),
    ("max-examples", "-1", "expected an integer >= 1"),
    ("xfails", "no-such-file.txt", "no such file: 'no-such-file.txt'"),
]


def run(cwd, *command) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], cwd=cwd, env=paths.child_environment(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("option, value, problem", BAD_VALUES, ids=[f"{o}={v}" for o, v, _ in BAD_VALUES])
def test_check_command(tmp_path, option, value, problem):
    done = run(tmp_path, "-m", "roialign_suite", "check", f"--{option}", value)
    line = one_line(done)
    assert done.returncode == 2 and done.stdout == "", line
    assert line.startswith("roialign-suite check: error: ") and f"--{option}" in line and problem in line, line


@pytest.mark.parametrize("option, value, problem", BAD_VALUES, ids=[f"{o}={v}" for o, v, _ in BAD_VALUES])
def test_plugin_option(tmp_path, option, value, problem):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = run(tmp_path, "-m", "pytest", "-p", "roialign_suite.pytest_plugin", "-p", "no:cacheprovider",
               f"--roialign-{option}={value}")
    line = one_line(done)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, line
    assert line.startswith("ERROR: ") and f"--roialign-{option}" in line and problem in line, line


@pytest.mark.parametrize("command", [["check", "--level-mapper"], ["bench", "--device", "tpu"],
                                     ["gate", "--target", "roialign_suite.paths.import_root"],
                                     ["verify", "--target", "roialign_suite.paths:no_such_function"],
                                     ["fuzz", "--device", "tpu"]],
                         ids=["check-missing-value", "bench-device", "gate-target", "verify-target", "fuzz-device"])
def test_other_command_lines(tmp_path, command):
    """A value left out, and the subcommands sharing the target options, answer the same way."""
    done = run(tmp_path, "-m", "roialign_suite", *command)
    line = one_line(done)
    assert done.returncode == 2 and f"roialign-suite {command[0]}: error: argument {command[1]}" in line, line


@pytest.mark.parametrize("command", sorted(set(cli.COMMANDS) - {"warm"}))
def test_every_subcommand_answers_help(tmp_path, command):
    """Each subcommand imports and prints its usage (``roialign-suite mutate`` once failed at import, with
    nothing to notice it); ``warm`` takes no options and would compile every kernel variant instead."""
    done = run(tmp_path, "-m", "roialign_suite", command, "--help")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-3000:]
    assert "usage" in done.stdout.lower() or command in done.stdout, done.stdout[-2000:]
