"""``roialign-suite ecosystem``: the property suite on every third-party CPU kernel installed here.

Each installed third-party built-in (the registry's records that are not ours,
not the definition, run on the CPU and can run here) gets its own
``roialign-suite check``, with its shipped expected-failures file
(``Implementation.xfails``, under ``properties/xfails/``), a JSON report and a
Markdown summary under ``--out`` (default ``./roialign-ecosystem``). A table
of every kernel's outcome is printed and written to ``OUT/summary.md``. Exit
status 0 when every check passed (its listed divergences expected), 1 when
one failed, 2 on a usage error. ``--implementation`` narrows the list;
pytest arguments after ``--`` go to every check.

``--bench`` times the same kernels instead (``benchmarks/ecosystem_bench.py``;
``--out`` default ``./roialign-ecosystem/bench``; ``--quick``: toy sizes).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from roialign_suite import options, paths
from roialign_suite.implementations import registry
from roialign_suite.implementations.records import Implementation


def kernels(wanted: Sequence[str] = ()) -> List[Implementation]:
    """The third-party CPU built-ins under test: ``wanted`` (names), else every one; unavailable
    ones are left out (the table says why)."""
    third_party = [i for i in registry.builtin() if not i.ours and not i.definition and i.device == "cpu"]
    if wanted:
        third_party = [i for i in third_party if i.name in wanted]
    return third_party


def check_command(kernel: Implementation, out: Path, forwarded: Sequence[str], extra: Sequence[str] = ()) -> List[str]:
    """The ``roialign-suite check`` of one kernel, writing ``OUT/NAME.json`` and ``OUT/NAME.md``."""
    command = [sys.executable, "-m", "roialign_suite.cli", "check", f"--implementation={kernel.name}",
               f"--report={out / (kernel.name + '.json')}", f"--summary={out / (kernel.name + '.md')}"]
    if kernel.xfails:
        command.append(f"--xfails={paths.package_dir('properties') / 'xfails' / kernel.xfails}")
    return command + [f"--{a[len(options.PYTEST_PREFIX):]}" for a in forwarded] + (["--", *extra] if extra else [])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="roialign-suite ecosystem", description=__doc__.splitlines()[0])
    options.add_to_argparse(parser, options.ECOSYSTEM)
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    wanted = [n for value in (args.roialign_implementation or []) for n in options.names(value)]
    own_options = (options.PYTEST_PREFIX + "implementation", options.PYTEST_PREFIX + "quick")
    forwarded = [a for a in options.forwarded(args) if not a.startswith(own_options)]
    if args.roialign_bench:
        if forwarded:
            given = ", ".join("--" + a[len(options.PYTEST_PREFIX):].split("=")[0] for a in forwarded)
            parser.error(f"{given}: options of the property checks, not of --bench")
        from roialign_suite.benchmarks import ecosystem_bench

        return ecosystem_bench.run(kernels(wanted), args.roialign_out or Path("roialign-ecosystem", "bench"),
                                   bool(args.roialign_quick), extra)
    if args.roialign_quick:
        parser.error("--quick applies with --bench only")
    args.out = args.roialign_out or Path("roialign-ecosystem")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kernel in kernels(wanted):
        if kernel.unavailable:
            rows.append((kernel.name, "not installed", kernel.unavailable, 0.0))
            continue
        start = time.monotonic()
        code = subprocess.run(check_command(kernel, args.out, forwarded, extra), env=paths.child_environment()).returncode
        report = args.out / f"{kernel.name}.json"
        totals = json.loads(report.read_text())["totals"] if report.exists() else {}
        counts = ", ".join(f"{n} {k}" for k, n in totals.items() if n) or "no report"
        rows.append((kernel.name, "passed" if code == 0 else f"FAILED (exit {code})", counts,
                     time.monotonic() - start))
    lines = ["| kernel | check | tests | seconds |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {verdict} | {detail} | {seconds:.0f} |" for name, verdict, detail, seconds in rows]
    (args.out / "summary.md").write_text("# roialign-suite ecosystem\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    ran = [r for r in rows if r[1] != "not installed"]
    if not ran:
        print("roialign-suite ecosystem: no third-party kernel is installed here", file=sys.stderr)
        return 1
    return 0 if all(r[1] == "passed" for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
