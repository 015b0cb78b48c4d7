"""The operator-contract machinery: crash isolation, crash findings in the corpus, operator detection.

End to end: the contract properties run on a planted kernel that segfaults on
maps without pixels (``properties.fuzz.planted.crashing_roi_align``) in a
pytest subprocess; the run completes, reports the crash as a failure naming
the input, writes the input to its corpus folder, and the other properties
still run; the written case then fails its replay (isolated) on the crasher
and passes on our kernel.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import pickle
import re
import subprocess
import threading
import time

import pytest
import torch
import torchvision

from roialign_suite import paths
from roialign_suite.properties import contract, findings, isolation
from roialign_suite.implementations import registry
from roialign_suite.properties.fuzz import planted
from roialign_suite.properties.replay import case_from_entry, check_still_diverges
from roialign_suite.properties.strategies import RoIAlignCase, with_layout

CRASHER = "roialign_suite.properties.fuzz.planted:crashing_roi_align"
EMPTY_MAP = RoIAlignCase(shape=(1, 2, 0, 3), boxes=((0, 0.0, 0.0, 2.0, 2.0),), output_size=(2, 2))


# --- isolation ------------------------------------------------------------------------------

def _sleep(seconds):
    time.sleep(seconds)


def _raise():
    raise ValueError("refused, clearly")


def test_isolated_call_returns_what_it_returned():
    outcome = isolation.run_isolated(torch.arange, 4)
    assert outcome.kind == isolation.RETURNED and torch.equal(outcome.result(), torch.arange(4))


def test_isolated_call_reraises_what_it_raised_with_the_workers_traceback():
    outcome = isolation.run_isolated(_raise)
    assert outcome.kind == isolation.RAISED and not outcome.died
    with pytest.raises(ValueError, match="refused, clearly") as raised:
        outcome.result()
    assert "isolated worker" in "".join(raised.value.__notes__)


@pytest.mark.parametrize("fn, args, observed", [
    (ctypes.string_at, (0,), {"observed_crash": {"signal": "SIGSEGV"}}),
    (os.abort, (), {"observed_crash": {"signal": "SIGABRT"}}),
    (os._exit, (3,), {"observed_crash": {"exit_status": 3}}),
], ids=["segfault", "abort", "exit"])
def test_a_dying_child_is_an_outcome_not_the_end_of_the_run(fn, args, observed):
    outcome = isolation.run_isolated(fn, *args)
    assert outcome.kind == isolation.CRASHED and outcome.died and outcome.observed() == observed
    with pytest.raises(isolation.Crash, match="the call"):
        outcome.result("the call")


def _parallel_sum(x):
    return float((x * 3).sum())


def test_a_worker_survives_the_callers_openmp_pool():
    """GNU OpenMP's threads do not survive a fork: a child forked from a process that ran a
    parallel region waits for them for ever in its own first one (measured). Workers are forked
    from a zygote that never runs one, so the caller's pool does not matter."""
    x = torch.randn(3000, 3000)
    with_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        float((x * 2).sum())  # a parallel region in the parent
        outcome = isolation.run_isolated(_parallel_sum, x, timeout=30)
    finally:
        torch.set_num_threads(with_threads)
    assert outcome.kind == isolation.RETURNED, outcome.describe()


def test_a_hanging_child_is_killed_after_the_timeout():
    start = time.monotonic()
    outcome = isolation.run_isolated(_sleep, 60, timeout=1)
    assert outcome.kind == isolation.TIMED_OUT and outcome.observed() == {"observed_timeout_s": 1}
    assert time.monotonic() - start < 30


def test_a_value_that_cannot_be_sent_back_is_a_clear_error():
    outcome = isolation.run_isolated(threading.Lock)  # a lock does not pickle
    with pytest.raises(RuntimeError, match="could not be sent back"):
        outcome.result()
    with pytest.raises(AttributeError, match="Can't pickle local object"):  # nor does a lambda: the caller's error
        isolation.run_isolated(lambda: None)


def test_bad_timeout_is_refused():
    with pytest.raises(ValueError, match="timeout must be positive"):
        isolation.run_isolated(torch.arange, 1, timeout=0)


def test_records_pickle_by_name_so_a_spawned_child_rebuilds_them():
    for name in ("numba", "torchvision-cpu", f"target:{CRASHER}"):
        assert pickle.loads(pickle.dumps(registry.resolve(name))).name == name
    adhoc = registry.Implementation("ad hoc", planted.roi_align)
    assert pickle.loads(pickle.dumps(adhoc)) == adhoc
    with pytest.raises(LookupError, match="no implementation called 'nope'"):
        registry.resolve("nope")


def test_a_worker_runs_a_check_on_a_record_passed_by_name_and_restarts_after_a_death():
    target = registry.target(CRASHER)
    died = isolation.run_isolated(contract.check_output_contract, target, EMPTY_MAP, torch.float32, key="t")
    assert died.observed() == {"observed_crash": {"signal": "SIGSEGV"}}
    fine = isolation.run_isolated(contract.check_output_contract, target, EMPTY_MAP.replace(boxes=()),
                                  torch.float32, key="t")
    assert fine.kind == isolation.RETURNED, fine.describe()
    assert isolation.worker("t").starts == 2


@pytest.mark.parametrize("choice, ours_isolated, theirs_isolated", [
    ("third-party", False, True), ("all", True, True), ("none", False, False)])
def test_the_runs_choice_says_whose_calls_run_in_a_worker(monkeypatch, choice, ours_isolated, theirs_isolated):
    monkeypatch.setattr(isolation, "settings", isolation.Settings())
    isolation.configure(isolate=choice)
    ours, theirs = registry.by_name()["numba"], registry.target(CRASHER)
    assert (isolation.isolates(ours), isolation.isolates(theirs)) == (ours_isolated, theirs_isolated)
    with pytest.raises(ValueError, match="isolate must be one of third-party, all, none"):
        isolation.configure(isolate="some")
    with pytest.raises(ValueError, match="call timeout must be a positive number"):
        isolation.configure(timeout_s=0)


def test_an_isolated_kernel_gives_its_own_output_and_gradient():
    """Forward and backward through the worker equal the kernel's in-process results bitwise."""
    kernel = registry.by_name()["torchvision-cpu"]
    through_worker = isolation.isolated(kernel)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    boxes = [torch.tensor([[0.5, 1.0, 4.0, 6.5]], dtype=torch.float64), torch.tensor([[1.0, 0.0, 3.0, 5.0]], dtype=torch.float64)]
    grad_output = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    results = []
    for record in (kernel, through_worker):
        leaf = x.detach().clone().requires_grad_(True)
        out = record.roi_align(leaf, boxes, (2, 3), 0.5, 2, True)
        out.backward(grad_output)
        results.append((out.detach(), leaf.grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert pickle.loads(pickle.dumps(through_worker)).roi_align is kernel.roi_align  # rebuilt in-process by name


def test_an_isolated_kernel_that_dies_or_hangs_raises_a_crash_naming_the_call_and_writes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation, "settings", isolation.Settings(findings=tmp_path, timeout_s=2.0))
    x, boxes = torch.randn(1, 2, 5, 5), torch.tensor([[0, 0.0, 0.0, 12.0, 3.0]])
    crasher = isolation.isolated(registry.target("roialign_suite.properties.fuzz.planted:segfaulting_roi_align"))
    with pytest.raises(isolation.Crash, match=r"crashed with SIGSEGV in its forward on features \[1, 2, 5, 5\] float32"
                       r".*boxes \[\[0.0, 0.0, 0.0, 12.0, 3.0\]\].*aligned=True; corpus entry written to"):
        crasher.roi_align(x, boxes, 2, 1.0, 2, True)
    assert crasher.roi_align(x, boxes, 2, 1.0, 2, False).shape == (1, 2, 2, 2)  # a new worker, and the run goes on
    hanger = isolation.isolated(registry.target("roialign_suite.properties.fuzz.planted:hanging_roi_align"))
    with pytest.raises(isolation.Crash, match=r"hung \(killed after 2 s\) in its forward"):
        hanger.roi_align(x, boxes, 2, 1.0, 3, False)
    written = [json.loads(p.read_text())[0] for p in sorted(tmp_path.glob("*.json"))]
    deaths = [{k: e[k] for k in ("observed_crash", "observed_timeout_s") if k in e} for e in written]
    assert sorted(map(json.dumps, deaths)) == [json.dumps({"observed_crash": {"signal": "SIGSEGV"}}),
                                               json.dumps({"observed_timeout_s": 2.0})]
    for entry in written:  # each replays: the same death on the kernel, the definition's output
        case = case_from_entry(entry)
        assert torch.equal(case.features(), x) and case.sampling_ratio in (2, 3)


# --- findings -------------------------------------------------------------------------------

def test_a_crash_fails_the_check_names_the_input_and_writes_a_replayable_entry(tmp_path):
    target = isolation.isolated(registry.target(CRASHER))
    where = findings.Findings(tmp_path, "test_x[target]")
    with pytest.raises(isolation.Crash, match=r"crashed with SIGSEGV on case = RoIAlignCase\(shape=\(1, 2, 0, 3\)") as crash:
        findings.check_isolated(contract.check_output_contract, target, EMPTY_MAP, torch.float64, findings=where)
    (path,) = tmp_path.glob("*.json")
    assert str(path) in str(crash.value)
    (entry,) = json.loads(path.read_text())
    assert entry["observed_crash"] == {"signal": "SIGSEGV"} and entry["implementation"] == "*"
    assert case_from_entry(entry) == EMPTY_MAP and entry["expected"] == [[[[0.0] * 2] * 2] * 2]
    check_still_diverges(target, case_from_entry(entry), entry)  # replays (isolated) and still dies
    with pytest.raises(AssertionError, match="no longer dies as recorded"):
        check_still_diverges(registry.by_name()["numba"], case_from_entry(entry), entry)


def test_findings_go_to_the_runs_corpus_else_the_working_directory(tmp_path, monkeypatch):
    class Config:
        def __init__(self, corpus):
            self.corpus = corpus

        def getoption(self, name):
            return self.corpus

    monkeypatch.chdir(tmp_path)
    assert findings.findings_dir(Config(str(tmp_path / "mine"))) == tmp_path / "mine"
    assert findings.findings_dir(Config(None)) == tmp_path / findings.FINDINGS_FOLDER


# --- operator detection ---------------------------------------------------------------------

def test_an_operator_is_detected_given_directly_or_wrapped():
    op = torch.ops.torchvision.roi_align
    assert registry.as_operator(op) is op.default and registry.as_operator(op.default) is op.default

    @functools.wraps(op.default)
    def wrapper(*args):
        return op.default(*args)

    assert registry.as_operator(wrapper) is op.default
    assert registry.as_operator(torchvision.ops.roi_align) is None


def test_an_operator_target_is_called_with_torchvisions_signature():
    target = registry.target("torch:ops.torchvision.roi_align")
    assert target.operator is torch.ops.torchvision.roi_align.default
    x = torch.randn(2, 3, 6, 5)
    boxes = [torch.tensor([[0.5, 1.0, 4.0, 3.5]]), torch.tensor([[1.0, 0.0, 3.0, 5.0]])]
    assert torch.equal(target.roi_align(x, boxes, (2, 3), 0.5, 2, True),
                       torchvision.ops.roi_align(x, boxes, (2, 3), 0.5, 2, True))
    assert registry.target("roialign_suite.impl:roi_align").operator is None


def test_an_operator_of_another_schema_is_refused_clearly():
    with pytest.raises(ValueError, match="needs torchvision's roi_align schema"):
        registry.target("torch:ops.aten.mul.Tensor")


# --- layout contract ------------------------------------------------------------------------

@pytest.mark.parametrize("layout, dense", [("contiguous", True), ("channels_last", True), ("permuted", True),
                                           ("strided", False)])
def test_autograd_gives_a_leaf_the_layout_the_contract_says(layout, dense):
    x = with_layout(torch.randn(2, 3, 4, 5), layout).requires_grad_(True)
    assert contract.non_overlapping_and_dense(x) is dense
    torchvision.ops.roi_align(x, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]]), 2).sum().backward()
    assert contract.obeys_layout_contract(x.grad, x)
    # A contiguous gradient breaks the contract exactly where x is dense but not contiguous.
    assert contract.obeys_layout_contract(x.grad.contiguous(), x) is (layout in ("contiguous", "strided"))


# --- end to end -----------------------------------------------------------------------------

def _suite(tmp_path, *args):
    properties = paths.package_dir("properties")
    command = paths.pytest_command([properties / "test_operator_contract.py", properties / "test_corpus.py"],
                                   "-q", "-rA", "-p", "no:cacheprovider", f"--roialign-corpus={tmp_path / 'corpus'}",
                                   # A crash is under test, not a hang: the planted kernel is ours, and a
                                   # fresh worker may compile a variant for long on a loaded machine.
                                   "--roialign-call-timeout=900",
                                   *args)
    env = paths.child_environment(dict(os.environ, CI="true"))
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_crashing_kernel_is_a_finding_and_the_run_goes_on(tmp_path):
    run = _suite(tmp_path, f"--roialign-target={CRASHER}", "-k", "output_and_gradient or integer")
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    crash_line = next(line for line in out.splitlines() if line.startswith("FAILED") and "zero_sizes]" in line)
    assert "crashed with SIGSEGV on case = RoIAlignCase(shape=" in crash_line, crash_line
    for other in (r"test_output_and_gradient_follow_the_contract\[target:\S+-sizes\]", r"test_integer_input_is_refused"):
        assert re.search(rf"^PASSED \S*::{other}", out, re.MULTILINE), out
    (written,) = (tmp_path / "corpus").glob("*.json")
    (entry,) = json.loads(written.read_text())
    assert entry["observed_crash"] == {"signal": "SIGSEGV"} and 0 in entry["features"]["shape"][2:]
    # The written case replays: isolated, it fails on the crasher (the run still completes) and passes on ours.
    replay = _suite(tmp_path, f"--roialign-target={CRASHER}", "-k", "test_replay")
    assert replay.returncode == 1 and "crashed with SIGSEGV" in replay.stdout and written.name in replay.stdout, (
        replay.stdout)
    ours = _suite(tmp_path, "--roialign-implementation=numba", "-k", "test_replay")
    assert ours.returncode == 0, ours.stdout


def test_a_kernel_that_crashes_or_hangs_on_ordinary_examples_gets_a_complete_report(tmp_path):
    """Two planted targets on an ordinary property: one segfaults on aligned boxes wider than 4
    feature pixels, one hangs on sampling_ratio 3. The run completes; the JSON report and the
    summary name, for each, the property, the minimal input and the signal or the timeout; each
    finding is in the corpus folder."""
    planted_targets = {"segfaulting_roi_align": "crashed with SIGSEGV", "hanging_roi_align": "hung (killed after 2 s)"}
    properties = paths.package_dir("properties")
    report, summary = tmp_path / "report.json", tmp_path / "summary.md"
    command = paths.pytest_command(
        [properties / "test_differential.py"], "-q", "-p", "no:cacheprovider", "-k", "test_forward_matches_reference",
        f"--roialign-corpus={tmp_path / 'corpus'}", "--roialign-call-timeout=2", "--roialign-max-examples=20",
        f"--roialign-report={report}", f"--roialign-summary={summary}",
        *[f"--roialign-target=roialign_suite.properties.fuzz.planted:{name}" for name in planted_targets])
    run = subprocess.run(command, cwd=tmp_path, env=paths.child_environment(dict(os.environ, CI="true")),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 1, run.stdout + run.stderr
    tests = {t["implementation"].rsplit(":", 1)[-1]: t for t in json.loads(report.read_text())["tests"]}
    written = {p.name: json.loads(p.read_text())[0] for p in (tmp_path / "corpus").glob("*.json")}
    for name, death in planted_targets.items():
        failure = tests[name]["failure"]["message"]
        assert tests[name]["outcome"] == "failed" and tests[name]["property"] == "test_forward_matches_reference"
        assert death in failure and "in its forward on features [" in failure and "boxes [" in failure, failure
        assert death in summary.read_text()
        (entry,) = [e for e in written.values() if e["found_by"]["implementation"].endswith(name)]
        assert entry.get("observed_crash") == {"signal": "SIGSEGV"} or entry.get("observed_timeout_s") == 2.0


def test_a_gradient_without_elements_keeps_the_layout_contract_whatever_its_strides():
    """The dev profile's false alarm: x.grad strides (0, 1, 2, 2) 'breaking' the contract for x of the
    same strides, shape (1, 2, 0, 1): nothing to lay out."""
    x = torch.empty_strided((1, 2, 0, 1), (0, 1, 2, 2))
    assert contract.obeys_layout_contract(torch.empty_strided((1, 2, 0, 1), (0, 1, 2, 2)), x)
    assert not contract.obeys_layout_contract(torch.empty_strided((1, 2, 1, 1), (0, 1, 2, 2)), x.new_empty(1, 2, 1, 1))


def test_opcheck_runs_every_check_on_a_map_torch_itself_cannot_clone():
    """A map with N = C = 0 ([0, 0, 4, 8], contiguous) makes torch's own clone_input ask for -1
    elements in three of opcheck's four checks, for any operator (torchvision's too): the check
    hands opcheck the same empty map with zero strides (found with --hypothesis-seed=22)."""
    x = torch.empty(0, 0, 4, 8)
    assert contract._torch_cannot_clone(x) and not contract._torch_cannot_clone(torch.empty(0, 2, 4, 8))
    with pytest.raises(Exception, match="negative dimension"):
        torch.library.opcheck(torch.ops.torchvision.roi_align.default, (x, torch.empty(0, 5), 1.0, 1, 1, 2, False),
                              test_utils="test_schema")
    case = RoIAlignCase(shape=(0, 0, 4, 8), boxes=(), output_size=(1, 1))
    for name in ("numba", "torchvision-cpu"):
        contract.check_opcheck(registry.by_name()[name], case, torch.float16)


def test_a_kernel_in_a_worker_is_checked_without_the_explain_phase():
    """Each explain-phase re-run of a hanging example waits the whole call timeout: the phase is
    dropped for isolated kernels, every other phase kept."""
    from hypothesis import Phase, settings

    from roialign_suite.pytest_plugin.property_parametrization import _without_explain_phase

    everything = settings(phases=list(Phase))
    assert set(_without_explain_phase(everything).phases) == set(Phase) - {Phase.explain}
