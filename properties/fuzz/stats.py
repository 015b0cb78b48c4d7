"""What a fuzz campaign counts, how workers' counts add up, and the progress line and summary.

Each pytest process (one worker's round) keeps a :class:`Snapshot` and
rewrites it as JSON every few seconds; the runner merges every snapshot of the
campaign with :func:`merge` for the progress line and the final summary.

The discrepancy is what the properties hand to ``hypothesis.target``: for a
comparison, the worst ``error / derived bound`` over the output (above 1 the
property fails), one label per comparison (e.g. ``"numba forward"``).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

# Hypothesis observability names each hypothesis.target() value "target:LABEL" in a test case's
# features (not the suite's "target:MODULE:ATTR" implementation names).
OBSERVED_TARGET_PREFIX = "target:"
EXAMPLE_CHARS = 600  # of the worst example's representation kept in the summary


@dataclass
class Worst:
    value: float
    example: str


@dataclass
class PropertyStats:
    """One test item (a property on one implementation): examples run, time, failures, worst targets."""

    test: str
    implementation: str
    examples: int = 0
    invalid: int = 0
    failures: int = 0
    seconds: float = 0.0
    worst: Dict[str, Worst] = field(default_factory=dict)

    def observe(self, status: str, features: Dict[str, object], representation: str) -> None:
        """Count one Hypothesis test case (an observability ``test_case`` observation)."""
        self.examples += 1
        self.invalid += status == "gave_up"
        for name, value in features.items():
            if name.startswith(OBSERVED_TARGET_PREFIX) and isinstance(value, (int, float)):
                label = name[len(OBSERVED_TARGET_PREFIX):]
                if label not in self.worst or value > self.worst[label].value:
                    self.worst[label] = Worst(float(value), representation[:EXAMPLE_CHARS])

    def add(self, other: "PropertyStats") -> None:
        self.examples += other.examples
        self.invalid += other.invalid
        self.failures += other.failures
        self.seconds += other.seconds
        for label, worst in other.worst.items():
            if label not in self.worst or worst.value > self.worst[label].value:
                self.worst[label] = worst


@dataclass
class Finding:
    """A failure: the corpus file written for it, or why none could be (then the reproduction)."""

    test: str  # pytest node id
    implementation: str
    message: str
    corpus_file: Optional[str] = None
    properties: List[str] = field(default_factory=list)
    not_pinned: Optional[str] = None
    reproduction: Optional[str] = None


@dataclass
class Snapshot:
    """One pytest process's counts (one worker, one round)."""

    worker: int
    round: int
    seed: int
    max_examples: int
    properties: Dict[str, PropertyStats] = field(default_factory=dict)
    findings: List[Finding] = field(default_factory=list)
    done: bool = False

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(self)))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> "Snapshot":
        data = json.loads(path.read_text())
        properties = {
            nodeid: PropertyStats(**{**p, "worst": {k: Worst(**w) for k, w in p["worst"].items()}})
            for nodeid, p in data.pop("properties").items()
        }
        findings = [Finding(**f) for f in data.pop("findings")]
        return cls(properties=properties, findings=findings, **data)


@dataclass
class Totals:
    """A campaign's counts so far, over every worker and round."""

    properties: Dict[str, PropertyStats] = field(default_factory=dict)
    findings: List[Finding] = field(default_factory=list)
    rounds: int = 0
    workers: Tuple[int, ...] = ()

    @property
    def examples(self) -> int:
        return sum(p.examples for p in self.properties.values())

    def worst(self) -> Optional[Tuple[str, str, Worst]]:
        """``(node id, label, worst)`` of the largest discrepancy seen, or None."""
        best = None
        for nodeid, stats in self.properties.items():
            for label, worst in stats.worst.items():
                if best is None or worst.value > best[2].value:
                    best = (nodeid, label, worst)
        return best

    def failed_tests(self) -> List[str]:
        return sorted({f.test for f in self.findings})


def load_snapshots(directory: Path) -> List[Snapshot]:
    snapshots = []
    for path in sorted(directory.glob("*.json")):
        try:
            snapshots.append(Snapshot.load(path))
        except (OSError, ValueError, KeyError):  # being rewritten: counted next time
            continue
    return snapshots


def merge(snapshots: Iterable[Snapshot]) -> Totals:
    """Add up snapshots; findings are deduplicated by (test, corpus file or message)."""
    totals = Totals()
    seen = set()
    workers = set()
    for snapshot in snapshots:
        totals.rounds += 1
        workers.add(snapshot.worker)
        for nodeid, stats in snapshot.properties.items():
            mine = totals.properties.setdefault(nodeid, PropertyStats(stats.test, stats.implementation))
            mine.add(stats)
        for finding in snapshot.findings:
            key = (finding.test, finding.corpus_file or finding.message)
            if key not in seen:
                seen.add(key)
                totals.findings.append(finding)
    totals.workers = tuple(sorted(workers))
    return totals


# --- text -----------------------------------------------------------------------------

def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def short_test(nodeid: str) -> str:
    """``properties/test_x.py::test_y[params]`` -> ``test_x::test_y[params]``."""
    path, _, name = nodeid.partition("::")
    return f"{Path(path).stem}::{name}"


def progress_line(totals: Totals, elapsed: float, budget: float, running: int) -> str:
    rate = totals.examples / elapsed if elapsed > 0 else 0.0
    worst = totals.worst()
    worst_text = (f"{worst[2].value:.3g} ({worst[1]}, {short_test(worst[0])})" if worst else "n/a")
    return (f"[fuzz {clock(elapsed)}/{clock(budget)}] workers running {running} | rounds {totals.rounds} | "
            f"examples {totals.examples} ({rate:.0f}/s) | failures {len(totals.failed_tests())} | "
            f"worst error/bound {worst_text}")


def summary_text(totals: Totals, elapsed: float, budget: float) -> str:
    lines = [f"== fuzz summary: {clock(elapsed)} (budget {clock(budget)}), workers {len(totals.workers)}, "
             f"rounds {totals.rounds}, examples {totals.examples} =="]
    rows = sorted(totals.properties.items(), key=lambda kv: (kv[1].implementation, kv[0]))
    lines.append(f"{'property':<84} {'implementation':<16} {'examples':>8} {'invalid':>7} {'time':>7} "
                 f"{'failed':>6}  worst error/bound (label)")
    for nodeid, p in rows:
        worst = max(p.worst.items(), key=lambda kv: kv[1].value) if p.worst else None
        worst_text = f"{worst[1].value:.3g} ({worst[0]})" if worst else "-"
        lines.append(f"{short_test(nodeid):<84} {p.implementation:<16} {p.examples:>8} {p.invalid:>7} "
                     f"{p.seconds:>6.0f}s {p.failures:>6}  {worst_text}")
    lines.append("worst discrepancy per implementation (error / derived bound; > 1 violates the property):")
    per_implementation: Dict[str, Tuple[str, str, Worst]] = {}
    for nodeid, p in totals.properties.items():
        for label, worst in p.worst.items():
            best = per_implementation.get(p.implementation)
            if best is None or worst.value > best[2].value:
                per_implementation[p.implementation] = (nodeid, label, worst)
    for name, (nodeid, label, worst) in sorted(per_implementation.items()):
        lines.append(f"  {name}: {worst.value:.3g} in {short_test(nodeid)} ({label}) on")
        lines.append("    " + worst.example.strip().replace("\n", "\n    "))
    lines.append(f"failures found: {len(totals.findings)}")
    for f in totals.findings:
        if f.corpus_file:
            lines.append(f"  {f.corpus_file}: {', '.join(f.properties)} on {f.implementation} (from {f.test})")
        else:
            lines.append(f"  {f.test} on {f.implementation}: NOT pinned ({f.not_pinned})")
            lines.append(f"    {f.message.splitlines()[0] if f.message else ''}")
            if f.reproduction:
                lines.append("    reproduce: " + f.reproduction.strip().replace("\n", "\n    "))
    return "\n".join(lines)
