"""The campaign: worker processes running rounds of the property suite until the time budget ends.

Each worker runs pytest on the property files, round after round, each round
with a fresh seed (``worker_hooks.seed_hypothesis``; not ``--hypothesis-seed``, which
switches the example database off) and twice the ``max_examples`` of the last
(capped), under the ``fuzz`` profile of ``properties.fuzz.worker_hooks``. All
workers share one example database, so a failure one worker shrinks is
replayed (already minimal) by every other at its next round. A test that has
failed is not fuzzed again in this campaign (it would only replay the same
failure). No round starts in the last seconds of the budget, no test item
starts after it; a round still running ``grace`` seconds past it is
interrupted (its database entries are already saved).

With ``replay_only`` (harvest) a single round replays the database's failing
examples without generating any: how a machine turns what others (or
HypoFuzz) found into corpus files.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from roialign_suite import paths
from roialign_suite.properties.fuzz import worker_hooks
from roialign_suite.properties.fuzz.stats import Totals, load_snapshots, merge, progress_line, summary_text

NOT_FUZZED = ("test_corpus.py",)  # the replay of pinned cases: nothing to search
MIN_ROUND_S = 5.0  # no round starts closer than this to the end of the budget
EXIT_NOTHING_COLLECTED = 5


def default_files() -> List[str]:
    """Every property file of the suite (installed or checkout), but the corpus replay."""
    return sorted(str(p) for p in paths.package_dir("properties").glob("test_*.py") if p.name not in NOT_FUZZED)


def default_corpus() -> Path:
    """Where findings go: the checkout's ``properties/corpus/fuzz`` (replayed by its CI), else
    ``roialign-corpus/`` in the working directory (replay it with ``--roialign-corpus``)."""
    root = paths.checkout_root()
    return root / "properties" / "corpus" / "fuzz" if root else paths.work_dir() / "roialign-corpus"


@dataclass
class Campaign:
    """What to fuzz, for how long, with how many workers and which database."""

    budget_s: float
    workers: int = 1
    files: Sequence[str] = field(default_factory=default_files)
    pytest_args: Sequence[str] = ()  # --roialign-target, --roialign-implementation, -k ... passed through
    database: str = worker_hooks.DEFAULT_DATABASE
    corpus: Path = field(default_factory=default_corpus)
    out: Optional[Path] = None
    seed: Optional[int] = None
    first_examples: int = 25
    max_examples: int = 400
    progress_every_s: float = 10.0
    grace_s: float = 60.0
    replay_only: bool = False

    def __post_init__(self):
        if self.seed is None:
            self.seed = random.SystemRandom().getrandbits(32)
        if self.out is None:
            self.out = paths.work_dir() / ".hypothesis" / "fuzz" / time.strftime("%Y%m%d-%H%M%S")


@dataclass
class Worker:
    index: int
    rounds: int = 0
    process: Optional[subprocess.Popen] = None
    log: Optional[object] = None
    stopped: Optional[str] = None  # why this worker starts no more rounds


class Runner:
    def __init__(self, campaign: Campaign, echo=print):
        self.c = campaign
        self.echo = echo
        self.stats_dir = campaign.out / "stats"
        self.logs_dir = campaign.out / "logs"
        self.retired_path = campaign.out / "retired.json"
        for d in (self.stats_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.workers = [Worker(i) for i in range(1 if campaign.replay_only else campaign.workers)]
        self.start = time.monotonic()
        self.wall_deadline = time.time() + campaign.budget_s
        # Rounds whose pytest died or errored (not 0 or 1): the campaign is incomplete, and says so.
        self.died: List[str] = []

    # --- one round ----------------------------------------------------------------------
    def round_seed(self, worker: Worker) -> int:
        return random.Random(f"{self.c.seed}-{worker.index}-{worker.rounds}").getrandbits(32)

    def command(self) -> List[str]:
        return paths.pytest_command(self.c.files, "-p", "roialign_suite.properties.fuzz.worker_hooks",
                                    "-p", "no:cacheprovider", "--hypothesis-profile", worker_hooks.PROFILE,
                                    "-q", "--no-header", "--tb=line", "-rN", *self.c.pytest_args)

    def environment(self, worker: Worker, seed: int) -> dict:
        env = paths.child_environment()
        examples = min(self.c.first_examples * 2 ** worker.rounds, self.c.max_examples)
        env.update({
            worker_hooks.STATS_ENV: str(self.stats_dir / f"worker{worker.index}-round{worker.rounds}.json"),
            "ROIALIGN_FUZZ_CORPUS": str(self.c.corpus),
            "ROIALIGN_FUZZ_DB": self.c.database,
            "ROIALIGN_FUZZ_DEADLINE": str(self.wall_deadline),
            "ROIALIGN_FUZZ_MAX_EXAMPLES": str(examples),
            "ROIALIGN_FUZZ_RETIRED": str(self.retired_path),
            "ROIALIGN_FUZZ_WORKER": str(worker.index),
            "ROIALIGN_FUZZ_ROUND": str(worker.rounds),
            "ROIALIGN_FUZZ_SEED": str(seed),
            "ROIALIGN_FUZZ_PHASES": worker_hooks.REPLAY_PHASES if self.c.replay_only else worker_hooks.FUZZ_PHASES,
        })
        env.pop("CI", None)  # the ci profile is derandomized; the fuzz profile is chosen explicitly anyway
        # One thread per worker: workers are the parallelism, and they share the machine.
        for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        return env

    def start_round(self, worker: Worker) -> None:
        seed = self.round_seed(worker)
        self.retired_path.write_text(json.dumps(self.totals().failed_tests()))
        worker.log = open(self.logs_dir / f"worker{worker.index}-round{worker.rounds}.log", "w")
        worker.process = subprocess.Popen(
            self.command(), env=self.environment(worker, seed), stdout=worker.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def finish_round(self, worker: Worker) -> None:
        code = worker.process.returncode
        worker.log.close()
        log_path = self.logs_dir / f"worker{worker.index}-round{worker.rounds}.log"
        worker.process, worker.rounds = None, worker.rounds + 1
        if worker.stopped:  # interrupted: the reason is already given
            pass
        elif code == EXIT_NOTHING_COLLECTED:
            worker.stopped = "nothing left to fuzz"
        elif code not in (0, 1):  # 0: all passed, 1: failures found (recorded by the plugin)
            tail = log_path.read_text()[-3000:]
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
            worker.stopped = f"pytest {how}"
            self.died.append(f"worker {worker.index} round {worker.rounds - 1}: pytest {how} (log {log_path})")
            self.echo(f"[fuzz] worker {worker.index} round {worker.rounds - 1}: pytest {how}; "
                      f"log {log_path}:\n{tail}")
        if self.c.replay_only:
            worker.stopped = worker.stopped or "replayed once"

    def interrupt(self, worker: Worker, why: str) -> None:
        """SIGINT (pytest stops and reports), then SIGKILL after 15 s."""
        try:
            os.killpg(worker.process.pid, signal.SIGINT)
            worker.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait()
        except ProcessLookupError:
            worker.process.wait()
        self.echo(f"[fuzz] worker {worker.index}: {why}")
        worker.stopped = why
        self.finish_round(worker)

    # --- the loop -----------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def totals(self) -> Totals:
        return merge(load_snapshots(self.stats_dir))

    def running(self) -> List[Worker]:
        return [w for w in self.workers if w.process is not None]

    def run(self) -> Totals:
        self.echo(f"[fuzz] {len(self.workers)} worker(s), budget {self.c.budget_s:.0f} s, seed {self.c.seed}, "
                  f"database {self.c.database}, corpus {self.c.corpus}, run dir {self.c.out}")
        self.echo(f"[fuzz] pytest {' '.join(self.c.files)} {' '.join(self.c.pytest_args)}")
        try:
            self.loop()
        except KeyboardInterrupt:  # workers run in their own sessions: Ctrl-C reaches only us
            self.echo("[fuzz] interrupted: stopping the workers")
            for worker in self.running():
                self.interrupt(worker, "interrupted (Ctrl-C)")
        totals = self.totals()
        self.report(totals)
        return totals

    def loop(self) -> None:
        last_progress = 0.0
        while True:
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is not None:
                    self.finish_round(worker)
                may_start = self.elapsed() < self.c.budget_s - MIN_ROUND_S or (self.c.replay_only and not worker.rounds)
                if worker.process is None and worker.stopped is None and may_start:
                    self.start_round(worker)
            if not self.running():
                break
            if self.elapsed() > self.c.budget_s + self.c.grace_s:
                for worker in self.running():
                    self.interrupt(worker, f"round interrupted {self.c.grace_s:.0f} s past the budget")
                break
            if self.elapsed() - last_progress >= self.c.progress_every_s:
                last_progress = self.elapsed()
                self.echo(progress_line(self.totals(), self.elapsed(), self.c.budget_s, len(self.running())))
            time.sleep(0.5)

    def report(self, totals: Totals) -> None:
        text = summary_text(totals, self.elapsed(), self.c.budget_s)
        stopped = [f"worker {w.index}: {w.stopped}" for w in self.workers if w.stopped]
        if stopped:
            text += "\n" + "; ".join(stopped)
        if self.died:
            text += "\nINCOMPLETE: " + "; ".join(self.died)
        (self.c.out / "summary.txt").write_text(text + "\n")
        (self.c.out / "summary.json").write_text(json.dumps(asdict(totals), indent=1))
        self.echo(text)
        self.echo(f"[fuzz] summary written to {self.c.out / 'summary.txt'} (and summary.json)")
