"""A script run in a fresh interpreter that imports this same ``roialign_suite`` (helper for the tests)."""
import subprocess
import sys

from roialign_suite import paths


def run_python(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``script`` with ``python -c`` in the suite's import root; fails the test on a non-zero exit."""
    done = subprocess.run([sys.executable, "-c", script], cwd=paths.import_root(), env=paths.child_environment(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
