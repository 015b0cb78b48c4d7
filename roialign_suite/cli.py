"""``roialign-suite``: the suite's command (also ``python -m roialign_suite``).

    roialign-suite check  --target mypkg.ops:roi_align [--xfails F] [--report R.json] [--summary R.md] [-- PYTEST ARGS]
    roialign-suite verify [--target mypkg.ops:roi_align]   # agreement table against the float64 reference
    roialign-suite bench  [--target ...] [-- PYTEST ARGS]  # time every workload, save under .benchmarks/
    roialign-suite gate   [--target ...] [--quick]         # fail when a speedup falls below benchmarks/gate.toml
    roialign-suite report [--run] [--target ...]           # Markdown, JSON and plots under report/
    roialign-suite fuzz   [--target ...] --minutes N       # fuzz the properties; findings become corpus cases
    roialign-suite mutate [--only ID]                      # plant each catalogued bug in our code, check the suite catches it
    roialign-suite warm                                    # compile every kernel variant into Numba's on-disk cache
    roialign-suite crossover [--out DIR]                   # time our forward's two paths by RoI count, fit the cost model

A target is ``MODULE:ATTR`` naming a callable with ``torchvision.ops.roi_align``'s
signature. Every subcommand runs from any working directory and writes there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import List, Optional, Sequence

from roialign_suite import paths


def _split(argv: Sequence[str]):
    """``(own arguments, pytest arguments after --)``."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def _targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", action="append", default=[], metavar="MODULE:ATTR",
                        help="a roi_align with torchvision.ops.roi_align's signature; repeatable")
    parser.add_argument("--device", default=None, help="device the targets run on (cpu or cuda)")


def _suite_options(args) -> List[str]:
    options = [f"--roialign-target={t}" for t in args.target]
    if args.device:
        options.append(f"--roialign-device={args.device}")
    return options


def check(argv: Sequence[str]) -> int:
    """The property suite on the targets (or the built-ins): pytest on the installed properties."""
    own, extra = _split(argv)
    parser = argparse.ArgumentParser(prog="roialign-suite check", description=check.__doc__)
    _targets(parser)
    parser.add_argument("--implementation", action="append", default=[], metavar="NAME",
                        help="built-in implementation(s) to verify instead (e.g. onnxruntime)")
    parser.add_argument("--level-mapper", metavar="MODULE:ATTR", help="a LevelMapper class to verify too")
    parser.add_argument("--level-dialect", help="the dialect it claims (default torchvision)")
    parser.add_argument("--xfails", action="append", default=[], metavar="FILE", help="expected-failures file")
    parser.add_argument("--strict-xfails", action="store_true",
                        help="a listed expected failure that passes, or an entry that matches nothing, fails the run")
    parser.add_argument("--report", metavar="FILE.json", help="JSON report of every property x implementation")
    parser.add_argument("--summary", metavar="FILE.md", help="Markdown summary of the report")
    parser.add_argument("--profile", help="Hypothesis profile: ci, dev, thorough")
    parser.add_argument("--max-examples", type=int, help="examples per property")
    parser.add_argument("--seed", type=int, help="seed for a random, reproducible run")
    parser.add_argument("--isolate", choices=("third-party", "all", "none"),
                        help="which kernels run in a worker process (default third-party: all but ours)")
    parser.add_argument("--call-timeout", type=float, metavar="SECONDS",
                        help="an isolated call running longer is a hang (default 60)")
    args = parser.parse_args(own)
    options = _suite_options(args)
    options += [f"--roialign-implementation={n}" for n in args.implementation]
    for name in ("level_mapper", "level_dialect", "report", "summary", "profile", "max_examples", "seed", "isolate",
                 "call_timeout"):
        value = getattr(args, name)
        if value is not None:
            options.append(f"--roialign-{name.replace('_', '-')}={value}")
    options += [f"--roialign-xfails={f}" for f in args.xfails]
    options += ["--roialign-strict-xfails"] * args.strict_xfails
    command = paths.pytest_command([paths.package_dir("properties")], *options, *extra)
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def verify(argv: Sequence[str]) -> int:
    from roialign_suite.properties import verify as job

    return job.main(list(argv))


def bench(argv: Sequence[str]) -> int:
    """Time every workload (``--target`` too) and save the run under ``.benchmarks/``."""
    own, extra = _split(argv)
    parser = argparse.ArgumentParser(prog="roialign-suite bench", description=bench.__doc__)
    _targets(parser)
    parser.add_argument("--quick", action="store_true", help="toy sizes, one round (checks the pipeline)")
    args = parser.parse_args(own)
    from roialign_suite.benchmarks.gate import storage

    options = _suite_options(args) + (["--roialign-quick"] if args.quick else
                                      ["--benchmark-autosave", f"--benchmark-storage={storage()}"])
    command = paths.pytest_command([paths.package_dir("benchmarks")], "-q", *options, *extra)
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def _with_targets(prog: str, main, argv: Sequence[str]) -> int:
    """``main(argv)`` of a job whose pytest arguments follow ``--``, with ``--target`` turned into them."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    _targets(parser)
    args, rest = parser.parse_known_args(list(argv))
    own, extra = _split(rest)
    suite = _suite_options(args)
    return main(own + (["--", *suite, *extra] if suite or extra else []))


def gate(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import gate as job

    return _with_targets("roialign-suite gate", job.main, argv)


def report(argv: Sequence[str]) -> int:
    from roialign_suite.benchmarks import report as job

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


COMMANDS = {"check": check, "verify": verify, "bench": bench, "gate": gate, "report": report, "fuzz": fuzz,
            "mutate": mutate, "crossover": crossover, "warm": warm}


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
