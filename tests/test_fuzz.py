"""The fuzz tool (``roialign-suite fuzz``): its pieces, and two short real campaigns.

End to end (marker ``fuzz``, about 3 minutes on 2 cores): a campaign against
``properties.fuzz.planted`` (our kernel with a bug on samples exactly on the
last row) finds the bug, writes a corpus case into a temporary corpus, and
the corpus replay then fails on that case (and passes on our kernel). Two
workers share a Redis database on a private loopback server; a third
process that generates nothing replays the shrunk failure from Redis.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis.strategies._internal.utils import to_jsonable

from roialign_suite import impl
from roialign_suite.properties.fuzz import corpus, planted
from roialign_suite.properties.fuzz.redis_server import LocalRedis, redis_server_missing
from roialign_suite.properties.fuzz.stats import load_snapshots
from roialign_suite.properties.discrepancy import UNBOUNDED, discrepancy
from roialign_suite.properties.strategies import RoIAlignCase
from roialign_suite.implementations import registry

REPO = Path(__file__).resolve().parents[1]
PLANTED = "roialign_suite.properties.fuzz.planted:roi_align"
# The property drawing boundary-sample boxes only: the short campaigns need seconds, not minutes.
NARROW = ["--files", "properties/test_edge_cases.py", "-k", "boundary_sample"]
# A sample exactly on y == H - 1 = 4: the box spans feature rows 3.5..4.5, one sample per bin.
ON_LAST_ROW = RoIAlignCase(shape=(1, 2, 5, 6), boxes=((0, 1.0, 3.5, 3.0, 4.5),), output_size=(1, 1), sampling_ratio=1)


# --- pieces ---------------------------------------------------------------------------------

def test_planted_bug_zeroes_only_bins_with_a_sample_on_the_last_row():
    assert not torch.equal(ON_LAST_ROW.run(planted.roi_align), ON_LAST_ROW.run(impl.roi_align))
    assert not bool(ON_LAST_ROW.run(planted.roi_align).any())
    one_row_up = ON_LAST_ROW.replace(boxes=((0, 1.0, 2.5, 3.0, 3.5),))
    assert torch.equal(one_row_up.run(planted.roi_align), one_row_up.run(impl.roi_align))


def test_case_is_read_back_from_its_observability_form():
    """Hypothesis reports a dataclass argument as a dict of its fields; the corpus writer rebuilds the case."""
    case = ON_LAST_ROW.replace(dtype="float32", layout="strided", seed=7)
    assert corpus.case_from_arguments({"implementation": "numba", "case": to_jsonable(case, avoid_realization=False)}) == case
    assert corpus.case_from_arguments({"grad_seed": 3}) is None


def test_violations_name_the_failing_replayed_properties():
    target = registry.target(PLANTED)
    names = [v.property for v in corpus.find_violations(target, ON_LAST_ROW, [0])]
    assert names == ["forward_matches_reference", "backward_matches_reference"]
    assert corpus.find_violations(registry.by_name()["numba"], ON_LAST_ROW, [0]) == []


def test_discrepancy_is_the_worst_error_over_bound():
    assert discrepancy(torch.tensor([0.5, 3.0]), torch.tensor([1.0, 2.0])) == 1.5
    assert discrepancy(torch.tensor([0.0]), torch.tensor([0.0])) == 0.0
    assert discrepancy(torch.tensor([1e-30]), torch.tensor([0.0])) == UNBOUNDED
    assert discrepancy(torch.tensor([float("nan")]), torch.tensor([1.0])) == UNBOUNDED


# --- campaigns ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled_kernels():
    """Compile (and cache on disk) our Numba kernels first, so no campaign spends its budget on that."""
    features = torch.randn(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    for dtype in (torch.float64, torch.float32):
        x = features.detach().to(dtype).requires_grad_(True)
        impl.roi_align(x, torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=dtype), 2).sum().backward()


def fuzz(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roialign_suite.properties.fuzz", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def replay(corpus_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "properties/test_corpus.py", "-q", "-p", "no:cacheprovider",
                           f"--roialign-corpus={corpus_dir}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def written_cases(corpus_dir: Path):
    return {p.name: json.loads(p.read_text()) for p in sorted(corpus_dir.glob("*.json"))}


@pytest.mark.fuzz
def test_planted_bug_is_found_written_and_fails_the_replay(tmp_path, compiled_kernels):
    run = fuzz("--target", PLANTED, *NARROW, "--seconds", "60", "--campaign-seed", "1", "--progress-every", "5",
               "--db", str(tmp_path / "db"), "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "run"),
               timeout=240)
    assert run.returncode == 1, run.stdout + run.stderr  # 1: failures found
    assert "[fuzz 0:" in run.stdout and "== fuzz summary" in run.stdout
    cases = written_cases(tmp_path / "corpus")
    assert len(cases) == 1, run.stdout
    (name, entries), = cases.items()
    assert {e["property"] for e in entries} >= {"forward_matches_reference"}
    for entry in entries:
        assert entry["implementation"] == "*" and entry["found_by"]["implementation"] == f"target:{PLANTED}"
        assert entry["observed"] != entry["expected"]
    failing = replay(tmp_path / "corpus", f"--roialign-target={PLANTED}")
    assert failing.returncode == 1 and name in failing.stdout, failing.stdout
    passing = replay(tmp_path / "corpus", "--roialign-implementation=numba")
    assert passing.returncode == 0, passing.stdout


@pytest.mark.fuzz
def test_a_kernel_that_kills_the_process_is_a_finding_isolated_and_an_incomplete_campaign_otherwise(tmp_path):
    """A target that segfaults on aligned boxes wider than 4 feature pixels. Isolated (the default
    for a target), the crash is a finding written to the corpus (exit 1); run in-process
    (``--isolate none``) the worker's pytest dies, and the campaign says so and exits 2."""
    crasher = "roialign_suite.properties.fuzz.planted:segfaulting_roi_align"
    narrow = ["--files", "properties/test_differential.py", "-k", "test_forward_matches_reference"]

    def campaign(name: str, *args: str) -> subprocess.CompletedProcess:
        return fuzz("--target", crasher, *narrow, "--seconds", "45", "--grace", "90", "--campaign-seed", "3", *args,
                    "--db", str(tmp_path / f"{name}-db"), "--corpus", str(tmp_path / name),
                    "--out", str(tmp_path / f"{name}-run"), timeout=300)

    isolated = campaign("isolated")
    assert isolated.returncode == 1, isolated.stdout + isolated.stderr
    # Written twice: by the isolation at the death (the minimal call) and by the campaign (the case).
    entries = [e for written in written_cases(tmp_path / "isolated").values() for e in written]
    assert entries and all(e["observed_crash"] == {"signal": "SIGSEGV"} and e["aligned"] for e in entries), entries
    in_process = campaign("in-process", "--isolate", "none")
    assert in_process.returncode == 2, in_process.stdout + in_process.stderr
    assert "pytest killed by SIGSEGV" in in_process.stderr and "INCOMPLETE" in in_process.stdout


@pytest.mark.fuzz
@pytest.mark.skipif(redis_server_missing() is not None, reason=f"{redis_server_missing()}")
def test_two_workers_share_one_redis_database(tmp_path, compiled_kernels):
    import redis

    with LocalRedis() as server:
        run = fuzz("--target", PLANTED, *NARROW, "--seconds", "45", "--grace", "30", "--campaign-seed", "2",
                   "--workers", "2", "--redis", server.url, "--corpus", str(tmp_path / "corpus"),
                   "--out", str(tmp_path / "run"), timeout=240)
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 0 if both were still shrinking at the end
        snapshots = load_snapshots(tmp_path / "run" / "stats")
        for worker in (0, 1):
            assert sum(p.examples for s in snapshots if s.worker == worker for p in s.properties.values()) > 0
        assert redis.Redis.from_url(server.url).keys("hypothesis-example:*"), "nothing stored in Redis"

        def harvest(url: str, name: str) -> subprocess.CompletedProcess:
            """A process that generates nothing: it can only replay failures stored in the database."""
            return fuzz("--target", PLANTED, *NARROW, "--seconds", "60", "--replay-only", "--redis", url,
                        "--corpus", str(tmp_path / name), "--out", str(tmp_path / f"{name}-run"), timeout=240)

        shared = harvest(server.url, "harvest")
        empty = harvest(server.url.replace("/0", "/1"), "control")  # another database number: nothing stored
    assert shared.returncode == 1, shared.stdout + shared.stderr
    (entries,) = written_cases(tmp_path / "harvest").values()
    assert entries[0]["found_by"]["implementation"] == f"target:{PLANTED}"
    assert empty.returncode == 0 and not written_cases(tmp_path / "control"), empty.stdout
