"""Our kernels under forks and threads (``impl/threads.py``).

Every scenario that a wrong threading layer makes die, hang or abort runs in
a fresh interpreter with a timeout, importing the same ``roialign_suite`` as
this process. The environment is passed on: ``NUMBA_THREADING_LAYER=omp``
shows what GNU OpenMP breaks (the fork and thread-count tests fail).
"""
from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numba
import pytest
import torch

import roialign_suite
from roialign_suite import impl
from roialign_suite.impl import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(roialign_suite.__file__)))
TIMEOUT_S = 120
NUMBA_TBB_FORK_NOTICE = "Unable to join threads to shut down before fork()"

# Forward and backward of one seeded case: the workload every scenario checks bit for bit.
CASE = '''
import os, sys, threading, warnings
import torch
from roialign_suite import impl
from roialign_suite.impl import threads

def case(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 32, 20, 28, generator=g).requires_grad_()
    corner = torch.rand(48, 2, generator=g) * 40
    size = torch.rand(48, 2, generator=g) * 20 + 1
    image = torch.randint(0, 2, (48, 1), generator=g).float()
    out = impl.roi_align(x, torch.cat([image, corner, corner + size], 1), 7, 0.5, 2, True)
    out.backward(torch.randn(out.shape, generator=g))
    return out.detach(), x.grad

def same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))
'''


def run_script(body: str, *args: str, env: dict | None = None, before: str = "") -> str:
    """Run ``before + CASE + body`` in a fresh interpreter; return the last line it printed.

    Fails the test with its output if it exits non-zero or runs past ``TIMEOUT_S``.
    """
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, environment.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(before) + CASE + textwrap.dedent(body), *args],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its DataLoader and Pool workers die with it on a timeout
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hung for {TIMEOUT_S} s\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    if process.returncode != 0:
        pytest.fail(f"exit code {process.returncode}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    # Numba's TBB pool reports a fork it could not shut TBB down for with C's
    # puts(); C stdio is flushed after Python's at exit, so that line can land
    # after the script's own last line. Whether TBB manages is a race; the
    # script's own warnings are what the tests check.
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith(NUMBA_TBB_FORK_NOTICE)]
    return lines[-1] if lines else ""


def without(*names: str) -> dict:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    """Compile (or load) the kernels once here, so no subprocess pays a cold compile."""
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    impl.roi_align(x, torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]]), 2, 1.0, 2).sum().backward()


FORKED_WORKERS = '''
parent_first = sys.argv[1] == "parent-first"
if parent_first:
    expected = [case(s) for s in range(4)]

class Cases(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return case(i)

loader = torch.utils.data.DataLoader(
    Cases(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60
)
from_loader = list(loader)
import multiprocessing
with multiprocessing.get_context("fork").Pool(2) as pool:
    from_pool = pool.map_async(case, range(4), chunksize=1).get(timeout=60)
if not parent_first:
    expected = [case(s) for s in range(4)]
differ = [i for i in range(4) if not (same(from_loader[i], expected[i]) and same(from_pool[i], expected[i]))]
assert not differ, f"cases {differ} differ from the parent's"
print("ok")
'''


@pytest.mark.parametrize("order", ["parent-first", "workers-only"])
def test_forked_workers_give_the_parents_bits(order):
    """DataLoader (fork, 2 workers, 1 torch thread each) and fork Pool (2 threads each) workers."""
    assert run_script(FORKED_WORKERS, order) == "ok"


CONCURRENT = '''
expected = [case(s) for s in range(6)]
differ = []

def worker(k):
    for repeat in range(3):
        for s in range(6):
            if not same(case(s), expected[s]):
                differ.append((k, s))

workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for w in workers:
    w.start()
for w in workers:
    w.join()
assert not differ, f"(thread, case) {differ} differ from the single-thread results"
print(threads.threading_layer(), threads.CHOICE.requested)
'''


def test_concurrent_threads_give_single_thread_bits():
    run_script(CONCURRENT)


def test_fallback_serialises_concurrent_calls():
    """TBB unloadable: workqueue, on which unserialised concurrent calls abort the process."""
    out = run_script(CONCURRENT, env={**without("NUMBA_THREADING_LAYER"), "ROIALIGN_NO_TBB": "1"})
    assert out.split() == ["workqueue", "workqueue"]


def test_torch_thread_count_is_left_alone():
    """torch's count, set before our import or between calls, is the count after our calls; our kernels use it."""
    out = run_script('''
    for wanted in (1, 2, 1):
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
        case(wanted)
        assert torch.get_num_threads() == wanted, (wanted, torch.get_num_threads())
        assert threads.threads_for_kernels() == min(wanted, threads.numba.config.NUMBA_NUM_THREADS)
    print("ok")
    ''', before="import torch; torch.set_num_threads(1)\n")
    assert out == "ok"


def _tbb_installed() -> bool:
    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize(
    "env, layer, requested",
    [
        ({}, "tbb" if _tbb_installed() else "workqueue", "tbb" if _tbb_installed() else "workqueue"),
        ({"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue", "workqueue"),
    ],
    ids=["ours", "users-choice"],
)
def test_layer_is_the_chosen_one(env, layer, requested):
    """Ours: TBB where the tbb package is installed, else the workqueue fallback; a user's explicit layer is kept."""
    out = run_script('''
    print(threads.threading_layer(), threads.CHOICE.requested, "|", threads.describe())
    ''', env={**without("NUMBA_THREADING_LAYER", "ROIALIGN_NO_TBB"), **env})
    assert out.split()[:2] == [layer, requested], out


def test_fork_waits_for_calls_in_flight_and_warns_when_tbb_cannot_shut_down():
    """A fork waits for a call in flight; on TBB it warns while another caller lives, or from another thread."""
    out = run_script('''
    import time
    inside, leave, done = threading.Event(), threading.Event(), threading.Event()
    left_at = []

    def caller():
        case(0)  # this thread has run kernels, and stays alive through the fork
        with threads.kernel_threads():
            inside.set()
            time.sleep(0.5)
            left_at.append(time.monotonic())
        done.wait()

    t = threading.Thread(target=caller)
    t.start()
    inside.wait()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = os.fork()
        if pid == 0:
            os._exit(0)
    forked_at = time.monotonic()
    os.waitpid(pid, 0)
    done.set()
    t.join()
    assert left_at and forked_at >= left_at[0], "fork did not wait for the call in flight"
    tbb = threads.threading_layer() == "tbb"
    warned = any("other threads that ran roialign kernels" in str(w.message) for w in caught)
    assert warned == tbb, [str(w.message) for w in caught]

    def fork_elsewhere():
        with warnings.catch_warnings(record=True) as elsewhere:
            warnings.simplefilter("always")
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        caught[:] = elsewhere

    other = threading.Thread(target=fork_elsewhere)
    other.start()
    other.join()
    warned = any("not the thread that started" in str(w.message) for w in caught)
    assert warned == tbb, [str(w.message) for w in caught]
    print("ok")
    ''')
    assert out == "ok"


# --- in this process: no kernel runs concurrently here ------------------------------------------

def test_kernel_threads_follows_torch_and_restores_numba():
    before_torch, before_numba = torch.get_num_threads(), numba.get_num_threads()
    try:
        for wanted in (1, 2):
            torch.set_num_threads(wanted)
            with threads.kernel_threads() as used:
                assert used == numba.get_num_threads() == min(wanted, numba.config.NUMBA_NUM_THREADS)
            assert numba.get_num_threads() == before_numba
            assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before_torch)


def test_exclusive_calls_run_one_at_a_time_and_nest():
    calls = threads._Calls()
    first_inside, release = threading.Event(), threading.Event()
    second_entered = threading.Event()

    def first():
        with calls.enter(exclusive=True):
            with calls.enter(exclusive=True):  # nested in the same thread: no deadlock
                first_inside.set()
                release.wait(10)

    def second():
        with calls.enter(exclusive=True):
            second_entered.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_inside.wait(10)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.2)
    assert not second_entered.is_set(), "a second exclusive call ran alongside the first"
    release.set()
    assert second_entered.wait(10)
    a.join(10)
    b.join(10)
    assert calls.running == 0


def test_bad_no_tbb_switch_is_rejected(monkeypatch):
    monkeypatch.setenv(threads.NO_TBB_ENV, "yes")
    with pytest.raises(ValueError, match="ROIALIGN_NO_TBB must be 0 or 1"):
        threads._tbb_disabled()
