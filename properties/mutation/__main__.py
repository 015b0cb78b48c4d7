"""``roialign-suite mutate``: plant each catalogued bug in a copy of the code and run the suite on it.

For every mutant (``properties/mutation/mutants.py``): copy the checkout's
packages into a scratch directory, rewrite one snippet, check the mutated
code still imports and runs (``smoke``; else INVALID), then run pytest on the
property files for that target with the copy first on ``PYTHONPATH`` (the
``mutant_guard`` verifies the shadowing), a private Numba cache and the
derandomized ``ci`` Hypothesis profile, stopping at the first failure.

Verdicts: CAUGHT (pytest exit status 1: a test failed), SURVIVED (0),
INVALID (the smoke call failed), ERROR (anything else, timeouts included).
Exit status 0 only when every mutant is CAUGHT.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from roialign_suite import paths
from roialign_suite.properties.mutation import mutant_guard, smoke
from roialign_suite.properties.mutation.mutants import KERNELS, MUTANTS, Mutant, by_id

# What a mutant's copy holds, laid out as a checkout: the packages, the tests and pyproject.toml
# (pytest's configuration) from a checkout; from an installed suite, its package's folders.
SUBPACKAGES = paths.SUBPACKAGES
COPIED = ("roialign_suite", *SUBPACKAGES, "tests", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", ".hypothesis", ".pytest_cache")
PYTEST_OPTIONS = ("-x", "-q", "-p", "no:cacheprovider", "-p", "roialign_suite.pytest_plugin", "-p",
                  "roialign_suite.properties.mutation.mutant_guard")
OUTPUT_TAIL = 3000  # characters of a run's output kept for mutants that are not caught

CAUGHT, SURVIVED, INVALID, ERROR = "CAUGHT", "SURVIVED", "INVALID", "ERROR"


@dataclass
class Run:
    """One subprocess: its exit status (None on timeout), duration and output."""

    returncode: Optional[int]
    seconds: float
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass
class SuiteResult:
    verdict: str
    suite: List[str]
    returncode: Optional[int] = None
    seconds: float = 0.0
    first_failure: str = ""
    output_tail: str = ""


@dataclass
class MutantResult:
    id: str
    bug_class: str
    target: str
    description: str
    verdict: str
    seconds: float
    detail: str = ""
    properties: Optional[SuiteResult] = None
    unit_tests: Optional[SuiteResult] = None
    smoke_output: str = ""
    smoke_seconds: float = 0.0


@dataclass
class Slot:
    """A worker's scratch area: the mutated copy and two Numba caches.

    The copy always lives at the same path, and files are copied with their
    timestamps, so the clean kernels compiled into ``numba_clean`` stay valid
    for every mutant that leaves ``impl/kernels.py`` alone; a kernel mutant
    compiles into an emptied ``numba_mutant`` and never touches the clean cache.
    """

    root: Path
    src: Path = field(init=False)
    numba_clean: Path = field(init=False)
    numba_mutant: Path = field(init=False)

    def __post_init__(self):
        self.src = self.root / "src"
        self.numba_clean = self.root / "numba_clean"
        self.numba_mutant = self.root / "numba_mutant"

    def prepare(self, mutant: Mutant) -> Path:
        """A fresh copy of the checkout with ``mutant`` planted; returns the Numba cache dir to use."""
        if self.src.exists():
            shutil.rmtree(self.src)
        self.src.mkdir(parents=True)
        copy_sources(self.src)
        mutant.apply_in(self.src)
        if mutant.path != KERNELS:
            return self.numba_clean
        if self.numba_mutant.exists():
            shutil.rmtree(self.numba_mutant)
        return self.numba_mutant


def copy_sources(dest: Path) -> None:
    """The suite's sources into ``dest``, laid out as a checkout (the subpackages beside
    ``roialign_suite/``), from the checkout or from the installed package."""
    root = paths.checkout_root()
    if root is not None:
        for name in COPIED:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, dest / name, ignore=IGNORED)
            elif source.exists():
                shutil.copy2(source, dest / name)
        return
    package = paths.import_root() / "roialign_suite"
    shutil.copytree(package, dest / "roialign_suite", ignore=shutil.ignore_patterns(*SUBPACKAGES, "__pycache__", "*.pyc"))
    for name in SUBPACKAGES:
        shutil.copytree(paths.package_dir(name), dest / name, ignore=IGNORED)


def source_file(relative: str) -> Path:
    """A file of the suite named as in a checkout (``impl/kernels.py``), wherever it is installed."""
    subpackage, _, rest = relative.partition("/")
    return paths.package_dir(subpackage) / rest


def run_process(command: Sequence[str], cwd: Path, env: dict, timeout: float) -> Run:
    """Run ``command``; on timeout kill its whole process group and return ``returncode=None``."""
    start = time.monotonic()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    return Run(returncode, time.monotonic() - start, output)


def mutant_env(mutant: Mutant, slot: Slot, numba_cache: Path, numba_opt: Optional[int]) -> dict:
    env = dict(os.environ)
    if numba_opt is not None:
        env["NUMBA_OPT"] = str(numba_opt)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(slot.src), env.get("PYTHONPATH", "")) if p)
    env["NUMBA_CACHE_DIR"] = str(numba_cache)
    env["ROIALIGN_PROFILE"] = "ci"
    env[mutant_guard.ROOT_ENV] = str(slot.src)
    env["ROIALIGN_MUTANT_ID"] = mutant.id
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)


def first_failure(output: str) -> str:
    """The node id of the first FAILED/ERROR line of pytest's short summary, or ''."""
    match = _SUMMARY_LINE.search(output)
    return match.group(2) if match else ""


def suite_verdict(run: Run) -> str:
    if run.timed_out:
        return ERROR
    return {1: CAUGHT, 0: SURVIVED}.get(run.returncode, ERROR)


def run_suite(paths: Sequence[str], slot: Slot, env: dict, timeout: float) -> SuiteResult:
    present = [p for p in paths if (slot.src / p).exists()]
    if not present:
        return SuiteResult(ERROR, list(paths), output_tail=f"none of the suite files exist: {list(paths)}")
    run = run_process([sys.executable, "-m", "pytest", *PYTEST_OPTIONS, *present], slot.src, env, timeout)
    verdict = suite_verdict(run)
    tail = "" if verdict == CAUGHT else run.output[-OUTPUT_TAIL:]
    if run.timed_out:
        tail = f"timed out after {timeout:.0f} s\n" + tail
    return SuiteResult(verdict, present, run.returncode, run.seconds, first_failure(run.output), tail)


def check_mutant(
    mutant: Mutant, slot: Slot, suite: Optional[Sequence[str]], unit_tests: bool, timeout: float, numba_opt: Optional[int]
) -> MutantResult:
    start = time.monotonic()
    result = MutantResult(mutant.id, mutant.bug_class, mutant.path, mutant.description, ERROR, 0.0)
    try:
        numba_cache = slot.prepare(mutant)
        env = mutant_env(mutant, slot, numba_cache, numba_opt)
        smoked = run_process([sys.executable, "-m", "roialign_suite.properties.mutation.smoke", str(slot.src)], slot.src, env, timeout)
        result.smoke_output = smoked.output[-OUTPUT_TAIL:]
        result.smoke_seconds = smoked.seconds
        if smoked.timed_out:
            result.detail = f"smoke call timed out after {timeout:.0f} s"
        elif smoked.returncode == smoke.SHADOW_ERROR:
            result.detail = "mutated copy does not shadow the checkout: " + smoked.output.strip()[-300:]
        elif smoked.returncode != 0:
            result.verdict = INVALID
            result.detail = "smoke call failed: " + (smoked.output.strip().splitlines() or ["no output"])[-1]
        else:
            result.properties = run_suite(suite or mutant.property_suite, slot, env, timeout)
            result.verdict = result.properties.verdict
            result.detail = result.properties.first_failure
            if unit_tests:
                result.unit_tests = run_suite(mutant.unit_suite, slot, env, timeout)
    except Exception as error:  # a broken copy or catalogue entry: report it, keep going
        result.detail = f"{type(error).__name__}: {error}"
    result.seconds = time.monotonic() - start
    return result


def check_all(mutants: Sequence[Mutant], jobs: int, suite, unit_tests: bool, timeout: float, numba_opt, workspace: Path, report):
    slots: "queue.Queue[Slot]" = queue.Queue()
    for i in range(jobs):
        slots.put(Slot(workspace / f"slot{i}"))

    def on_a_slot(mutant: Mutant) -> MutantResult:
        slot = slots.get()
        try:
            return check_mutant(mutant, slot, suite, unit_tests, timeout, numba_opt)
        finally:
            slots.put(slot)

    # Kernel mutants first: they compile from scratch, so they set the pace.
    ordered = sorted(mutants, key=lambda m: m.path != KERNELS)
    results = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(on_a_slot, m) for m in ordered]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results[result.id] = result
            report(
                f"[{done}/{len(ordered)}] {result.verdict:8} {result.seconds:6.1f}s (smoke {result.smoke_seconds:.0f}s)"
                f"  {result.id}  {result.detail}"
            )
    return [results[m.id] for m in mutants]


def format_table(results: Sequence[MutantResult], unit_tests: bool) -> str:
    headers = ["id", "class", "target", "verdict", "secs", "first failing test"]
    if unit_tests:
        headers.insert(4, "tests/")
    rows = []
    for r in results:
        row = [r.id, r.bug_class, r.target, r.verdict, f"{r.seconds:.0f}", r.detail]
        if unit_tests:
            row.insert(4, r.unit_tests.verdict if r.unit_tests else "-")
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def score_line(results: Sequence[MutantResult]) -> str:
    caught = sum(r.verdict == CAUGHT for r in results)
    others = {v: sum(r.verdict == v for r in results) for v in (SURVIVED, INVALID, ERROR)}
    extra = ", ".join(f"{n} {v.lower()}" for v, n in others.items() if n)
    return f"mutation score: caught {caught} / {len(results)}" + (f" ({extra})" if extra else "")


def selected(only: Optional[str]) -> List[Mutant]:
    if not only:
        return list(MUTANTS)
    known = by_id()
    ids = [i.strip() for i in only.split(",") if i.strip()]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise SystemExit(f"--only: unknown mutant ids {unknown}; see --list")
    return [known[i] for i in ids]


def rotten(mutants: Sequence[Mutant]) -> List[str]:
    """Problems applying each mutant to the checkout (the snippet must occur exactly once)."""
    problems = []
    for m in mutants:
        try:
            m.apply(source_file(m.path).read_text())
        except (OSError, ValueError) as error:
            problems.append(str(error))
    return problems


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="roialign-suite mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--only", metavar="ID[,ID]", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=2, help="mutants checked in parallel (default 2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per smoke call and per suite run (default 600)")
    parser.add_argument("--suite", nargs="+", metavar="PATH", help="test paths to run for every mutant instead of its target's property files")
    parser.add_argument("--unit-tests", action="store_true", help="also run tests/ for the target and report that verdict separately")
    parser.add_argument(
        "--numba-opt", type=int, choices=range(4), metavar="0-3",
        help="LLVM optimisation level for the mutants' kernels (env NUMBA_OPT; default: inherited, normally 3). "
        "0 about halves the compile each kernel mutant pays; the kernels use no fastmath, so results are the same",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    mutants = selected(args.only)
    if args.list:
        for m in mutants:
            print(f"{m.id:40} {m.bug_class:22} {m.path:24} {m.description}")
        print(f"{len(mutants)} mutants")
        return 0
    problems = rotten(mutants)
    if problems:
        print("catalogue does not apply to the checkout:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    workspace = Path(tempfile.mkdtemp(prefix="roialign-mutants-"))
    print(f"{len(mutants)} mutants, {args.jobs} at a time, scratch {workspace}", flush=True)
    start = time.monotonic()
    try:
        results = check_all(
            mutants, args.jobs, args.suite, args.unit_tests, args.timeout, args.numba_opt, workspace,
            lambda line: print(line, flush=True),
        )
    finally:
        if not args.keep:
            shutil.rmtree(workspace, ignore_errors=True)
    elapsed = time.monotonic() - start
    print()
    print(format_table(results, args.unit_tests))
    for r in results:
        if r.verdict != CAUGHT:
            tail = r.properties.output_tail if r.properties else r.smoke_output
            print(f"\n--- {r.id}: {r.verdict} ({r.detail})\n{tail[-1500:]}")
    print()
    if args.unit_tests:
        caught_by_units = sum(bool(r.unit_tests) and r.unit_tests.verdict == CAUGHT for r in results)
        print(f"tests/ alone: caught {caught_by_units} / {len(results)}")
    print(f"{score_line(results)}  [{elapsed / 60:.1f} min, {args.jobs} jobs]")
    if args.json:
        payload = {
            "score": {"caught": sum(r.verdict == CAUGHT for r in results), "total": len(results)},
            "minutes": round(elapsed / 60, 2),
            "jobs": args.jobs,
            "results": [asdict(r) for r in results],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0 if all(r.verdict == CAUGHT for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
