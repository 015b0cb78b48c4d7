"""``roialign-suite``: the suite's command (also ``python -m roialign_suite``).

    roialign-suite check  --target mypkg.ops:roi_align [--xfails F] [--report R.json] [--summary R.md] [-- PYTEST ARGS]
    roialign-suite verify [--target mypkg.ops:roi_align]   # agreement table against the float64 reference
    roialign-suite ecosystem [--implementation NAME]      # check every installed third-party kernel with its xfails
    roialign-suite bench  [--target ...] [-- PYTEST ARGS]  # time every workload, save under .benchmarks/
    roialign-suite gate   [--target ...] [--quick]         # fail when a speedup falls below benchmarks/gate.toml
    roialign-suite report [--run] [--target ...]           # Markdown, JSON and plots under report/
    roialign-suite fuzz   [--target ...] --minutes N       # fuzz the properties; findings become corpus cases
    roialign-suite mutate [--only ID]                      # plant each catalogued bug in our code, check the suite catches it
    roialign-suite warm                                    # compile every kernel variant into Numba's on-disk cache
    roialign-suite crossover [--out DIR]                   # time our forward's two paths by RoI count, fit the cost model
    roialign-suite track record|check|publish [...]        # performance history across commits and machines

A target is ``MODULE:ATTR`` naming a callable with ``torchvision.ops.roi_align``'s
signature. Every subcommand runs from any working directory and writes there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Optional, Sequence

from roialign_suite import options, paths


def _split(argv: Sequence[str]):
    """``(own arguments, pytest arguments after --)``."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def _parser(prog: str, command: str, description: Optional[str], add_help: bool = True) -> argparse.ArgumentParser:
    """A one-line-error parser holding ``command``'s options (:mod:`roialign_suite.options`); a
    ``MODULE:ATTR`` is resolved as the pytest child will, from the working directory."""
    options.importable_from_cwd()
    parser = options.OneLineParser(prog=prog, description=description, add_help=add_help)
    options.add_to_argparse(parser, command)
    return parser


def check(argv: Sequence[str]) -> int:
    """The property suite on the targets (or the built-ins): pytest on the installed properties."""
    own, extra = _split(argv)
    args = _parser("roialign-suite check", options.CHECK, check.__doc__).parse_args(own)
    command = paths.pytest_command([paths.package_dir("properties")], *options.forwarded(args), *extra)
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def verify(argv: Sequence[str]) -> int:
    from roialign_suite.properties import verify as job

    return job.main(list(argv))


def ecosystem(argv: Sequence[str]) -> int:
    from roialign_suite.properties import ecosystem as job

    return job.main(list(argv))


def bench(argv: Sequence[str]) -> int:
    """Time every workload (``--target`` too) and save the run under ``.benchmarks/``."""
    own, extra = _split(argv)
    args = _parser("roialign-suite bench", options.BENCH, bench.__doc__).parse_args(own)
    from roialign_suite.benchmarks.gate import saved_runs_folder

    saving = [] if args.roialign_quick else ["--benchmark-autosave", f"--benchmark-storage={saved_runs_folder()}"]
    command = paths.pytest_command([paths.package_dir("benchmarks")], "-q", *options.forwarded(args), *saving, *extra)
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def _with_targets(prog: str, main, argv: Sequence[str]) -> int:
    """``main(argv)`` of a job whose pytest arguments follow ``--``, with ``--target`` turned into them."""
    args, rest = _parser(prog, options.JOBS, None, add_help=False).parse_known_args(list(argv))
    own, extra = _split(rest)
    suite = options.forwarded(args)
    return main(own + (["--", *suite, *extra] if suite or extra else []))


def gate(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import gate as job

    return _with_targets("roialign-suite gate", job.main, argv)


def report(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import performance_report as job

    return _with_targets("roialign-suite report", job.main, argv)


def fuzz(argv: Sequence[str]) -> int:
    from roialign_suite.properties.fuzz.__main__ import main as job

    return job(list(argv))


def mutate(argv: Sequence[str]) -> int:
    from roialign_suite.properties.mutation.__main__ import main as job

    return job(list(argv))


def warm(argv: Sequence[str]) -> int:
    """Compile every kernel variant into Numba's on-disk cache."""
    from roialign_suite.benchmarks import jit
    return jit.warm()


def crossover(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import crossover as job
    return job.main(list(argv))


def track(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import track as job
    return job.main(list(argv))


COMMANDS = {"check": check, "verify": verify, "ecosystem": ecosystem, "bench": bench, "gate": gate, "report": report, "fuzz": fuzz,
            "mutate": mutate, "crossover": crossover, "warm": warm,
            "track": track}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
