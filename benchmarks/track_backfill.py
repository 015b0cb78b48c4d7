"""Backfill a history: the quick workloads at each of the last commits, recorded by today's recorder.

    python -m roialign_suite.benchmarks.track_backfill --store DIR [--commits 15] [--runs 2] [--rounds 15]
        [--reruns 10] [--plant 1.15 [--plant-only]]

Each commit is checked out into a temporary worktree under /tmp, and its own
``benchmarks/test_throughput.py`` runs under pytest-benchmark with that commit's code first on
``PYTHONPATH`` and its own pytest plugin (``roialign_suite.pytest_plugin``, before f52ce2b
``roialign_suite.plugin``; entry points off, so the installed one does not load), with the options
those commits understood: ``--roialign-quick --roialign-workload=<gate.toml's workloads>
--roialign-implementation=numba,torchvision-cpu --benchmark-json=...``. Their quick timing plan
is one round per case; a ``benchmarks/conftest.py`` written into the temporary worktree overrides
the plugin's ``roialign_timing_plan`` fixture to ``--rounds`` rounds. Each run is then recorded
by this checkout's ``roialign-suite track record --results``.

``--reruns N`` records the newest commit N more times (nothing changed: the check must stay
quiet). ``--plant F`` then adds a synthetic commit on top of the newest (id
``<newest>-planted-<F>x``, one minute later): the newest commit's code with our kernel's timed call
made F times slower (``benchmarks/slowed.py``'s ``ROIALIGN_SLOWDOWN``, busy-waiting rather than
sleeping: a sub-millisecond sleep overshoots), recorded ``--runs`` times (at least 3, the rule's
``min_runs_after``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONFTEST = '''
"""Written by track_backfill: more rounds than the quick plan's one, optionally our kernel slowed."""
import os, time
from pathlib import Path
import pytest
import roialign_suite

assert Path(roialign_suite.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[1]), roialign_suite.__file__


@pytest.fixture(scope="session")
def roialign_timing_plan():
    rounds = int(os.environ["TRACK_BACKFILL_ROUNDS"])
    return 0.0, rounds, rounds


if os.environ.get("ROIALIGN_SLOWDOWN"):
    from roialign_suite.benchmarks import runners, slowed

    _init, _call = runners.TimedCall.__init__, runners.TimedCall.__call__

    def __init__(self, workload, candidate, inputs):
        _init(self, workload, candidate, inputs)
        self.slowed = candidate.name == "numba"

    def __call__(self):
        start = time.perf_counter()
        _call(self)
        if self.slowed:
            until = start + slowed.slowdown() * (time.perf_counter() - start)
            while time.perf_counter() < until:
                pass

    runners.TimedCall.__init__, runners.TimedCall.__call__ = __init__, __call__
'''


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def workloads() -> str:
    from roialign_suite.benchmarks import gate

    return ",".join(gate.load_config().min_speedup)


def bench(tree: Path, output: Path, rounds: int, cache: Path, slowdown: float = 0.0) -> int:
    plugin = "roialign_suite.pytest_plugin" if (tree / "roialign_suite" / "pytest_plugin").is_dir() else "roialign_suite.plugin"
    env = dict(os.environ, PYTHONPATH=str(tree), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", NUMBA_CACHE_DIR=str(cache),
               TRACK_BACKFILL_ROUNDS=str(rounds))
    env.pop("ROIALIGN_SLOWDOWN", None)
    if slowdown:
        env["ROIALIGN_SLOWDOWN"] = str(slowdown)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_benchmark.plugin", "-p", plugin,
               "benchmarks/test_throughput.py", "--roialign-quick", f"--roialign-workload={workloads()}",
               "--roialign-implementation=numba,torchvision-cpu", f"--benchmark-json={output}"]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
    return done.returncode


def record(output: Path, store: Path, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "roialign_suite", "track", "record", "--results", str(output),
                    "--store", str(store), *extra], cwd=REPO, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--commits", type=int, default=15)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reruns", type=int, default=0)
    parser.add_argument("--plant", type=float, default=0.0)
    parser.add_argument("--plant-only", action="store_true", help="only the planted commit (after a backfill)")
    parser.add_argument("--ref", default="main")
    args = parser.parse_args(argv)
    commits = git("log", "--format=%H", f"-{1 if args.plant_only else args.commits}", args.ref).split()[::-1]
    work = Path(tempfile.mkdtemp(prefix="track-backfill-"))
    try:
        for i, commit in enumerate(commits):
            tree = work / commit[:12]
            git("worktree", "add", "--detach", str(tree), commit)
            (tree / "benchmarks" / "conftest.py").write_text(CONFTEST)
            newest = i == len(commits) - 1
            runs = 0 if args.plant_only else args.runs + (args.reruns if newest else 0)
            for n in range(runs):
                output = work / f"{commit[:12]}-{n}.json"
                if bench(tree, output, args.rounds, work / "numba-cache" / commit[:12]) == 0:
                    record(output, args.store)
                print(f"{dt.datetime.now():%H:%M:%S} {commit[:12]} run {n + 1}/{runs}", flush=True)
            if newest and args.plant:
                when = dt.datetime.fromisoformat(git("show", "-s", "--format=%cI", commit)) + dt.timedelta(minutes=1)
                for n in range(max(args.runs, 3)):
                    output = work / f"planted-{n}.json"
                    if bench(tree, output, args.rounds, work / "numba-cache" / commit[:12], args.plant) == 0:
                        record(output, args.store, "--commit", f"{commit[:12]}-planted-{args.plant:g}x",
                               "--commit-time", when.isoformat())
                    print(f"{dt.datetime.now():%H:%M:%S} planted {args.plant:g}x run {n + 1}", flush=True)
            git("worktree", "remove", "--force", str(tree))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        git("worktree", "prune")
    return 0


if __name__ == "__main__":
    sys.exit(main())
