"""Kernel performance across commits and machines: a history of runs, its steps, a check and a dashboard.

    roialign-suite track record [--run [--quick] [--repeat N] | --results RUN.json] [--store DIR] [--machine NAME]
    roialign-suite track check   [--store DIR] [--config track.toml]   # exit 1 on a recent regression
    roialign-suite track publish [--store DIR] --out DIR               # static HTML dashboard

The history (``--store``, default ``roialign-history/`` here) is a folder of plain JSON files, one
per run, named ``MACHINE-COMMIT-TIME.json`` (machine id, 12 hex digits of the commit, UTC time of
recording to the microsecond), so copying stores into one folder merges them: CI artifacts, or a
git branch holding the folder. Files in subfolders are read too.

One run file (schema :data:`SCHEMA`): ``commit``, ``commit_time`` (ISO 8601, the committer's),
``dirty``, ``recorded`` (UTC), ``machine`` (:func:`fingerprint`: CPU, cores, threads, library
versions, and its ``id``), ``baseline`` (torchvision CPU), and ``results``: per workload and
implementation the median, IQR and standard deviation in seconds, the rounds, the workload's size
(RoIs, channels) and ``speedup``: baseline median / this median from the same run (the gate's figure).

Series (:func:`build_series`): per machine, workload (and size) and implementation, over commits
ordered by commit time: ``ratio``, our time over the baseline's (1 / speedup; the noise-robust view,
every implementation but the baseline), and ``time``, the median in seconds. Steps and regressions:
:mod:`roialign_suite.benchmarks.step_detection`; the rule: ``benchmarks/track.toml``.
Exit status: 0 fine, 1 a regression (check) or a failed benchmark run (record), 2 no usable history.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from roialign_suite import options, paths

SCHEMA = "roialign-suite-track/1"
CONFIG = Path(__file__).with_name("track.toml")
LIBRARIES = ("roialign-suite", "torch", "torchvision", "numba", "numpy", "tbb")
RATIO, TIME = "ratio", "time"
VIEWS = (RATIO, TIME)


def default_store() -> Path:
    """``roialign-history/`` in the working directory."""
    return paths.work_dir() / "roialign-history"


# --- recording ------------------------------------------------------------------------------------

def _versions() -> Dict[str, Optional[str]]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def fingerprint(machine_info: Mapping, label: Optional[str] = None) -> Dict:
    """The machine a run ran on, from pytest-benchmark's ``machine_info`` and this environment: CPU model,
    cores (``cpu.count``), threads the process may use, clock, OS, Python, library versions, the thread
    variables, and ``id``: a slug of the CPU and a hash of the hardware fields (not the host name, so the
    throwaway runners of one CI machine type share a series; not the versions: a new torch is a step)."""
    cpu = machine_info.get("cpu") or {}
    hardware = {
        "cpu": cpu.get("brand_raw") or machine_info.get("processor") or platform.processor() or "unknown",
        "arch": cpu.get("arch_string_raw") or machine_info.get("machine") or platform.machine(),
        "cores": cpu.get("count") or os.cpu_count(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "hz": cpu.get("hz_advertised_friendly"),
        "system": machine_info.get("system") or platform.system(),
    }
    digest = hashlib.sha256(json.dumps(hardware, sort_keys=True).encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", str(hardware["cpu"]).lower()).strip("-")[:24] or "cpu"
    return {
        "id": f"{slug}-{hardware['cores']}c-{digest}",
        "label": label or f"{hardware['cpu']}, {hardware['cores']} cores",
        **hardware,
        "python": machine_info.get("python_version") or platform.python_version(),
        "libraries": _versions(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")
                if k in os.environ},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def run_record(run: Mapping, machine: Optional[str] = None, commit: Optional[str] = None,
               commit_time: Optional[str] = None, recorded: Optional[str] = None,
               baseline: Optional[str] = None) -> Dict:
    """A pytest-benchmark JSON (loaded) -> one run file's content. ``commit``/``commit_time`` override the
    run's ``commit_info`` (needed when it ran outside a git checkout); ``ValueError`` without a commit
    or without a workload timing."""
    from roialign_suite.benchmarks import figures

    info = run.get("commit_info") or {}
    commit = commit or info.get("id")
    if not commit:
        raise ValueError("the run has no commit (run it in a git checkout, or give --commit)")
    baseline = baseline or figures.baseline_name()
    results = figures.throughput_results(run.get("benchmarks") or [])
    if not results:
        raise ValueError("the run has no workload timing")
    stats = {(r["extra_info"]["workload"], r["extra_info"]["implementation"]): r for r in run["benchmarks"]
             if (r.get("extra_info") or {}).get("kind") == figures.THROUGHPUT}
    speedup = figures.speedups(results, baseline)
    rows = []
    for r in results:
        record = stats[(r.workload, r.implementation)]
        rows.append({
            "workload": r.workload, "implementation": r.implementation,
            "size": f"{r.rois} RoIs, C={record['extra_info'].get('channels')}",
            "median_s": r.median_s, "iqr_s": record["stats"].get("iqr"), "stddev_s": record["stats"].get("stddev"),
            "rounds": r.rounds, "speedup": speedup[(r.workload, r.implementation)],
        })
    return {
        "schema": SCHEMA,
        "commit": commit,
        "commit_time": commit_time or info.get("time") or _now(),
        "dirty": bool(info.get("dirty")) and commit == info.get("id"),  # as the run's git state says
        "recorded": recorded or _now(),
        "machine": fingerprint(run.get("machine_info") or {}, machine),
        "baseline": baseline,
        "results": rows,
    }


def short(commit: str) -> str:
    """A git hash's first 12 hex digits; any other id (a synthetic point) whole."""
    return commit[:12] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


def file_name(record: Mapping) -> str:
    """``MACHINE-COMMIT-TIME.json`` (:func:`short` commit): distinct for distinct (machine, commit, recording time)."""
    stamp = re.sub(r"[^0-9]", "", record["recorded"])[:20]
    commit = re.sub(r"[^0-9A-Za-z_.-]", "_", short(record["commit"]))
    return f"{record['machine']['id']}-{commit}-{stamp}.json"


def write_run(record: Mapping, store: Path) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    path = store / file_name(record)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def load_runs(store: Path) -> List[Dict]:
    """Every run file under ``store`` (subfolders too; other JSON files are skipped)."""
    runs = []
    for path in sorted(Path(store).rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("schema") == SCHEMA:
            runs.append(record)
    return runs


# --- series ---------------------------------------------------------------------------------------

@dataclass
class Series:
    """One machine's history of one (workload, size, implementation) in one view; ``groups[i]`` are the
    values of the runs of ``commits[i]`` (lower is better: a time ratio, or seconds)."""

    machine: str
    machine_label: str
    view: str
    workload: str
    size: str
    implementation: str
    commits: List[str] = field(default_factory=list)
    groups: List[List[float]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.view}|{self.workload}|{self.size}|{self.implementation}|{self.machine}"


def _instant(iso: str) -> _dt.datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is taken as UTC)."""
    moment = _dt.datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)).astimezone(_dt.timezone.utc)


def commit_order(runs: Sequence[Mapping]) -> List[str]:
    """Every commit of the history, oldest first: by commit time, then by first recording."""
    first = {}
    for r in runs:
        key = (_instant(r["commit_time"]), _instant(r["recorded"]))
        if r["commit"] not in first or key < first[r["commit"]]:
            first[r["commit"]] = key
    return sorted(first, key=lambda c: first[c])


def build_series(runs: Sequence[Mapping]) -> List[Series]:
    """Every series of the history (module docstring), commits in :func:`commit_order`."""
    position = {c: i for i, c in enumerate(commit_order(runs))}
    table: Dict[str, Series] = {}
    for run in sorted(runs, key=lambda r: (position[r["commit"]], _instant(r["recorded"]))):
        machine = run["machine"]
        for row in run["results"]:
            values = {TIME: row["median_s"]}
            if row["implementation"] != run["baseline"] and row.get("speedup"):
                values[RATIO] = 1.0 / row["speedup"]
            for view, value in values.items():
                s = Series(machine["id"], machine["label"], view, row["workload"], row["size"], row["implementation"])
                s = table.setdefault(s.key, s)
                if not s.commits or s.commits[-1] != run["commit"]:
                    s.commits.append(run["commit"])
                    s.groups.append([])
                s.groups[-1].append(value)
    return sorted(table.values(), key=lambda s: (s.workload, s.size, s.view, s.implementation, s.machine))


# --- the rule -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    threshold: float
    min_confidence: float
    recent_commits: int
    min_runs_after: int
    fail_on: Tuple[str, ...]


def load_rule(path: Path = CONFIG) -> Rule:
    """``track.toml`` -> :class:`Rule` (``ValueError`` naming the bad entry)."""
    data = tomllib.loads(Path(path).read_text())
    try:
        rule = Rule(float(data["threshold"]), float(data["min_confidence"]), int(data["recent_commits"]),
                    int(data["min_runs_after"]), tuple(data["fail_on"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error!r} (needs threshold, min_confidence, recent_commits, min_runs_after, fail_on)") from None
    if not rule.threshold > 0 or rule.recent_commits < 1 or rule.min_runs_after < 1 or set(rule.fail_on) - set(VIEWS):
        raise ValueError(f"{path}: threshold > 0, recent_commits >= 1, min_runs_after >= 1, fail_on within {VIEWS}")
    return rule


@dataclass(frozen=True)
class Finding:
    """A step of a series, placed in the history: it happened after ``last_before`` and by ``first_after``."""

    series: Series
    step: object  # step_detection.Step
    last_before: str  # the last commit at the old level
    first_after: str  # the first commit measured at the new level
    regression: bool  # an upward step asv's detect_regressions keeps (slower, not undone)
    fails: bool  # it fails the check (the rule)
    note: str  # why it does not fail, if it does not


def analyse(series: Sequence[Series], rule: Rule) -> List[Finding]:
    """Every step of every series, the regressions marked and judged by ``rule``."""
    from roialign_suite.benchmarks import step_detection

    findings = []
    for s in series:
        regressions = {st.before for st in step_detection.find_regressions(s.groups, rule.threshold, rule.min_confidence)}
        for st in step_detection.find_steps(s.groups):
            regression = st.before in regressions
            notes = []
            if regression:
                if s.view not in rule.fail_on:
                    notes.append(f"{s.view} view is not gated (fail_on)")
                if len(s.commits) - st.after > rule.recent_commits:
                    notes.append(f"older than the last {rule.recent_commits} commits")
                if st.n_after < rule.min_runs_after:
                    notes.append(f"{st.n_after} run(s) after it, {rule.min_runs_after} needed: rerun to confirm")
            findings.append(Finding(s, st, s.commits[st.before], s.commits[st.after], regression,
                                    regression and not notes, "; ".join(notes)))
    return findings


def describe(f: Finding) -> str:
    """One line: the series, the step's size and confidence, and the commit range."""
    s, st = f.series, f.step
    what = "our time / torchvision's" if s.view == RATIO else "median"
    level = (lambda v: f"{v:.3f}") if s.view == RATIO else (lambda v: f"{v * 1e3:.3f} ms")
    return (f"{s.workload} ({s.size}) {s.implementation} on {s.machine_label} [{s.machine}], {what}: "
            f"{level(st.level_before)} -> {level(st.level_after)} ({st.change:+.1%}, z={st.confidence:.1f}) "
            f"since {short(f.first_after)} (after {short(f.last_before)})")


def check(findings: Sequence[Finding]) -> int:
    """Print the steps; 1 when one fails the rule, else 0."""
    failing = [f for f in findings if f.fails]
    for f in findings:
        tag = "REGRESSION" if f.fails else ("regression, not failing" if f.regression else "step")
        print(f"{tag}: {describe(f)}" + (f" ({f.note})" if f.note else ""))
    if failing:
        print(f"track check FAILED: {len(failing)} regression(s)", file=sys.stderr)
        for f in failing:
            print("  " + describe(f), file=sys.stderr)
        return 1
    print(f"track check passed: no regression ({len(findings)} step(s) found)")
    return 0


# --- the command ----------------------------------------------------------------------------------

def _record(args) -> int:
    from roialign_suite.benchmarks import gate

    store = Path(args.roialign_store or default_store())
    status = 0
    sources: List[Path] = []
    if args.roialign_run:
        folder = Path(tempfile.mkdtemp(prefix="roialign-track-"))
        for n in range(args.roialign_repeat):
            sources.append(folder / f"run-{n}.json")
            status = gate.run_benchmarks(gate.load_config(), sources[-1], bool(args.roialign_quick), args.pytest_args) or status
    else:
        path = args.roialign_results or gate.latest_saved_run()
        if path is None or not Path(path).exists():
            print(f"no benchmark results to record ({path or gate.saved_runs_folder() / '*/*.json'} not found)", file=sys.stderr)
            return 2
        sources.append(Path(path))
    for source in sources:
        if not source.exists():
            continue
        try:
            record = run_record(json.loads(source.read_text()), args.roialign_machine, args.roialign_commit,
                                args.roialign_commit_time)
        except ValueError as error:
            print(f"{source}: {error}", file=sys.stderr)
            return 2
        print(f"recorded {write_run(record, store)}")
    return 1 if status else 0


def _history(args):
    store = Path(args.roialign_store or default_store())
    runs = load_runs(store)
    if not runs:
        print(f"no history under {store} (roialign-suite track record)", file=sys.stderr)
    return runs


def _check(args) -> int:
    runs = _history(args)
    if not runs:
        return 2
    return check(analyse(build_series(runs), load_rule(args.roialign_config or CONFIG)))


def _publish(args) -> int:
    from roialign_suite.benchmarks import dashboard

    runs = _history(args)
    if not runs:
        return 2
    rule = load_rule(args.roialign_config or CONFIG)
    series = build_series(runs)
    out = Path(args.roialign_out or "report/track")
    page = dashboard.write(out, runs, series, analyse(series, rule), rule)
    print(f"wrote {page}")
    return 0


ACTIONS = {"record": (options.TRACK_RECORD, _record), "check": (options.TRACK_CHECK, _check),
           "publish": (options.TRACK_PUBLISH, _publish)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ACTIONS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"roialign-suite track: unknown action {argv[0]!r}; choose from {', '.join(ACTIONS)}", file=sys.stderr)
            return 2
        return 0
    command, action = ACTIONS[argv[0]]
    parser = options.OneLineParser(prog=f"roialign-suite track {argv[0]}", description=__doc__.split("\n")[0])
    options.add_to_argparse(parser, command)
    if command == options.TRACK_RECORD:
        options.add_pytest_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return action(args)
    except (ValueError, RuntimeError) as error:  # a bad track.toml; asv missing
        print(f"roialign-suite track {argv[0]}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
