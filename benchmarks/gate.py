"""CI performance gate: fail when a kernel's speedup over torchvision drops below its threshold.

Main rule (machine-independent): for every workload listed in ``gate.toml``,
each gated implementation's speedup over the baseline, ``baseline median /
its median`` with both medians from the *same run*, must be at least the
workload's minimum. Gated implementations are ``gate.toml``'s
``implementations`` plus every plug-in target (``target:...``) in the run.
A missing timing fails too: a gate that cannot measure must not pass.

Optional absolute rule, for a fixed machine: pytest-benchmark's
``--benchmark-compare --benchmark-compare-fail=median:20%`` passed through to
the run (after ``--``) compares with the last saved run (``tox -e bench``).

    roialign-suite gate --run [--target M:A] [-- PYTEST ARGS]   # run the gated workloads, then check
    roialign-suite gate --results run.json       # check a saved pytest-benchmark JSON

Exit status: 0 pass, 1 a regression (each named with both figures), 2 no usable results.
"""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from roialign_suite import options, paths
from roialign_suite.benchmarks import figures
from roialign_suite.benchmarks.figures import Result
from roialign_suite.implementations.naming import is_target

CONFIG = Path(__file__).with_name("gate.toml")


def saved_runs_folder() -> Path:
    """Where benchmark runs are saved (``--benchmark-autosave``): ``.benchmarks/`` in the working directory."""
    return paths.work_dir() / ".benchmarks"
# Rounds per gated case at least: its median must not be one noisy sample.
GATE_MIN_ROUNDS = 3


@dataclass(frozen=True)
class GateConfig:
    baseline: str
    implementations: Tuple[str, ...]
    min_speedup: Dict[str, float]  # workload -> minimum speedup over the baseline


@dataclass(frozen=True)
class Verdict:
    workload: str
    implementation: str
    passed: bool
    message: str


def parse_config(text: str, source: str = "gate.toml") -> GateConfig:
    """``gate.toml`` text -> :class:`GateConfig` (``ValueError`` naming the bad entry)."""
    data = tomllib.loads(text)
    baseline = data["baseline"] if "baseline" in data else figures.baseline_name()
    implementations = data["implementations"] if "implementations" in data else [figures.ours_name()]
    minimums = data.get("min_speedup")
    if not isinstance(baseline, str) or not baseline:
        raise ValueError(f"{source}: baseline must be an implementation name, got {baseline!r}")
    if not isinstance(implementations, list) or not all(isinstance(n, str) for n in implementations):
        raise ValueError(f"{source}: implementations must be a list of names, got {implementations!r}")
    if not isinstance(minimums, dict) or not minimums:
        raise ValueError(f"{source}: [min_speedup] must map workload names to numbers")
    for workload, value in minimums.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{source}: min_speedup.{workload} must be a positive number, got {value!r}")
    return GateConfig(baseline, tuple(implementations), {w: float(v) for w, v in minimums.items()})


def load_config(path: Path = CONFIG) -> GateConfig:
    return parse_config(Path(path).read_text(), str(path))


def gated_implementations(results: Iterable[Result], config: GateConfig) -> List[str]:
    """The configured implementations, then every plug-in target present in the run."""
    targets = sorted({r.implementation for r in results if is_target(r.implementation)})
    return list(config.implementations) + [t for t in targets if t not in config.implementations]


def evaluate(results: Sequence[Result], config: GateConfig) -> List[Verdict]:
    """One verdict per (gated workload, gated implementation)."""
    median = {(r.workload, r.implementation): r.median_s for r in results}
    verdicts = []
    for name in gated_implementations(results, config):
        for workload, minimum in config.min_speedup.items():
            verdicts.append(_verdict(workload, name, minimum, median, config.baseline))
    return verdicts


def _verdict(workload: str, name: str, minimum: float, median: Dict, baseline: str) -> Verdict:
    base_s: Optional[float] = median.get((workload, baseline))
    own_s: Optional[float] = median.get((workload, name))
    if base_s is None or own_s is None:
        missing = baseline if base_s is None else name
        return Verdict(workload, name, False, f"{workload}: no {missing} timing in this run, so no speedup for {name}")
    speedup = base_s / own_s
    figures_text = (
        f"{name} is {speedup:.2f}x {baseline} (median {own_s * 1e3:.1f} ms vs {base_s * 1e3:.1f} ms)"
    )
    # A speedup equal to the minimum up to the rounding of the division passes.
    if speedup < minimum and not math.isclose(speedup, minimum, rel_tol=1e-12):
        return Verdict(workload, name, False, f"{workload}: {figures_text}, below the minimum {minimum:.2f}x")
    return Verdict(workload, name, True, f"{workload}: {figures_text}, minimum {minimum:.2f}x")


def report(verdicts: Sequence[Verdict], enforce: bool = True) -> int:
    """Print the verdicts; the exit status (0 pass, 1 fail)."""
    failed = [v for v in verdicts if not v.passed]
    for v in verdicts:
        print(("PASS " if v.passed else "FAIL ") + v.message)
    if not failed:
        print(f"gate passed: {len(verdicts)} checks")
        return 0
    if not enforce:
        print(f"quick run: {len(failed)} of {len(verdicts)} checks below threshold, not enforced (toy timings)")
        return 0
    print(f"gate FAILED: {len(failed)} of {len(verdicts)} checks", file=sys.stderr)
    for v in failed:
        print("  " + v.message, file=sys.stderr)
    return 1


def latest_saved_run(folder: Optional[Path] = None) -> Optional[Path]:
    """The newest pytest-benchmark JSON under ``folder`` (default :func:`saved_runs_folder`: autosaved runs), if any."""
    runs = sorted((folder or saved_runs_folder()).glob("*/*.json"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def run_benchmarks(config: GateConfig, output: Path, quick: bool, pytest_args: Sequence[str]) -> int:
    """Time the gated workloads (gated implementations and the baseline) into ``output``."""
    names = list(dict.fromkeys(list(config.implementations) + [config.baseline]))
    command = paths.pytest_command(
        [paths.package_dir("benchmarks") / "test_throughput.py"], "-q",
        f"--roialign-workload={','.join(config.min_speedup)}",
        f"--roialign-implementation={','.join(names)}",
        f"--benchmark-json={output}",
        f"--roialign-bench-min-rounds={GATE_MIN_ROUNDS}",
        *(["--roialign-quick"] if quick else []),
        *pytest_args,
    )
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, env=paths.child_environment(), check=False).returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="roialign-suite gate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="thresholds (default benchmarks/gate.toml)")
    options.add_to_argparse(parser, options.GATE)
    options.add_pytest_arguments(parser)
    args = parser.parse_args(argv)
    args.run, args.quick, args.results = args.roialign_run, bool(args.roialign_quick), args.roialign_results
    config = load_config(args.config)
    status = 0
    if args.run:
        args.results = Path(tempfile.mkdtemp(prefix="roialign-gate-")) / "gate.json"
        status = run_benchmarks(config, args.results, args.quick, args.pytest_args)
    path = args.results or latest_saved_run()
    if path is None or not Path(path).exists():
        print(f"no benchmark results to check ({path or saved_runs_folder() / '*/*.json'} not found)", file=sys.stderr)
        return 2
    records, _ = figures.load_records(path)
    verdicts = evaluate(figures.throughput_results(records), config)
    gate_status = report(verdicts, enforce=not args.quick)
    if status != 0:
        print(f"the benchmark run itself failed (pytest exit {status}); see its output above", file=sys.stderr)
        return 1
    return gate_status


if __name__ == "__main__":
    sys.exit(main())
