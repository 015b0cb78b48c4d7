"""Third-party kernels run in worker processes, so that a crash or a hang is a finding, not the end of the run.

A kernel may kill its process on valid input (torchvision's CPU RoIAlign dies
with SIGSEGV on a map with H = 0 or W = 0) or never return. Every call of a
third-party kernel the suite makes (the properties, the corpus replay, the
fuzzer, ``verify``) can run in a persistent worker process instead of the
caller's: :func:`isolated` gives an implementation record whose ``roi_align``
sends each call to its worker (the backward too, for a differentiable kernel),
and :func:`run_isolated` runs any picklable ``fn(*args)`` there. An
:class:`Outcome` says what the call did: returned, raised, the worker died
(its signal or exit status), or it ran past ``timeout`` seconds (then killed).
A call through an isolated record that dies raises :class:`Crash` (an
``AssertionError``: the example fails like any other, and Hypothesis shrinks
it, each attempt in a new worker) after writing the call's input to the
run's findings (:func:`configure`, ``properties/findings.py``).

How workers start: a worker is forked from a *zygote*, a fresh interpreter
on the caller's ``sys.path`` that imported torch and the kernel's module and never runs a
kernel. So a worker starts in milliseconds after a death, and no process that
ran kernels is ever forked (TBB and GNU OpenMP thread pools do not survive a
fork). One worker per key (an implementation's name; calls to one worker run
one at a time); a dead or killed worker is replaced on the next call. On
Linux a worker and its zygote die with the process that started them, and a
worker's data segment is capped at :data:`WORKER_MEMORY_SHARE` of the
machine's memory (a kernel allocating without bound dies alone).

Which calls: :func:`isolates` reads the run's choice (``--roialign-isolate``:
``third-party``, the default: every kernel but ours; ``all``; ``none``).
Our kernel must never crash and runs in-process by default. A property on an
isolated kernel runs without Hypothesis's explain phase (each of its re-runs of a
hanging example would wait the whole timeout: ``pytest_plugin/property_parametrization.py``).
"""
from __future__ import annotations

import ctypes
import dataclasses
import faulthandler
import importlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from roialign_suite.options import DEFAULT_CALL_TIMEOUT_S, ISOLATE_CHOICES
# Seconds a new worker may take to warm up (imports, JIT loading) before its first call.
WARM_UP_TIMEOUT_S = 300.0

RETURNED, RAISED, CRASHED, TIMED_OUT = "returned", "raised", "crashed", "timed out"


class Crash(AssertionError):
    """An isolated call killed its process or hung: a finding (fails the test that made the call).
    ``outcome``: the :class:`Outcome` (how it died), where known."""

    def __init__(self, message: str, outcome: Optional["Outcome"] = None):
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Outcome:
    """What an isolated call did: ``kind`` is one of RETURNED (``value``), RAISED (``error``),
    CRASHED (``signal``, e.g. ``"SIGSEGV"``, or ``exit_status``) and TIMED_OUT (after ``timeout_s``)."""

    kind: str
    value: Any = None
    error: Optional[BaseException] = None
    signal: Optional[str] = None
    exit_status: Optional[int] = None
    timeout_s: Optional[float] = None

    @property
    def died(self) -> bool:
        """The worker crashed or hung (a finding), rather than returning or raising."""
        return self.kind in (CRASHED, TIMED_OUT)

    def describe(self) -> str:
        if self.kind == CRASHED:
            return f"crashed with {self.signal}" if self.signal else f"exited with status {self.exit_status}"
        if self.kind == TIMED_OUT:
            return f"hung (killed after {self.timeout_s:g} s)"
        if self.kind == RAISED:
            return f"raised {type(self.error).__name__}: {self.error}"
        return "returned"

    def observed(self) -> dict:
        """How a corpus entry records a death: ``observed_crash`` (``{"signal": ...}`` or
        ``{"exit_status": ...}``) or ``observed_timeout_s``."""
        if self.kind == TIMED_OUT:
            return {"observed_timeout_s": self.timeout_s}
        if self.kind == CRASHED:
            return {"observed_crash": {"signal": self.signal} if self.signal else {"exit_status": self.exit_status}}
        raise ValueError(f"the call did not die: it {self.describe()}")

    def result(self, what: str = "the isolated call"):
        """The returned value; re-raises what the worker raised; :class:`Crash` naming ``what`` if it died."""
        if self.kind == RETURNED:
            return self.value
        if self.kind == RAISED:
            raise self.error
        raise Crash(f"{what} {self.describe()}", self)


def _exit_outcome(code: Optional[int]) -> Outcome:
    """A dead worker's outcome from its exit code (negative: killed by that signal)."""
    if code is not None and code < 0:
        return Outcome(CRASHED, signal=signal.Signals(-code).name)
    return Outcome(CRASHED, exit_status=code)


# --- the processes ----------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the one that started it exits (a hung kernel
    would otherwise outlive the run)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


# A worker's data segment may grow to this share of the machine's memory: a kernel that
# allocates without bound (PaddlePaddle on a doubly inverted box) dies (usually SIGABRT from
# a failed allocation) instead of taking the machine with it.
WORKER_MEMORY_SHARE = 0.25


def _limit_memory() -> None:
    try:
        import resource

        limit = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * WORKER_MEMORY_SHARE)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ImportError, ValueError, OSError):  # not POSIX, or the limit is already lower
        pass


def zygote_main(fd: int, preload: Sequence[str]) -> None:
    """The zygote's loop on the socket ``fd``: import ``preload``, then fork a worker on each
    ``("fork", sys_path)`` (its socket arrives as a passed handle) and report a worker's exit
    code on ``("reap", pid)``. It builds no record: the registry asks torch whether CUDA is
    available, and a worker forked after that deadlocks (seen: every call timed out)."""
    _die_with_parent()
    connection = Connection(fd)
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # the worker's first call raises the same error, where it is reported
            pass
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request[0] == "fork":
            fd = reduction.recv_handle(connection)
            pid = os.fork()
            if pid == 0:
                connection.close()
                code = 0
                try:
                    _die_with_parent()
                    _limit_memory()
                    sys.path[:] = request[1]
                    _serve(Connection(fd))
                except BaseException:
                    code = 70
                finally:
                    os._exit(code)
            os.close(fd)
            connection.send(pid)
        elif request[0] == "reap":
            _, status = os.waitpid(request[1], 0)
            connection.send(os.waitstatus_to_exitcode(status))


def _serve(connection: Connection) -> None:
    """A worker's loop: run each pickled ``(fn, args)`` and send back ``(kind, value)``."""
    # A death is reported by the caller, with its input: no stack dump on the terminal.
    faulthandler.disable()
    while True:
        try:
            data = connection.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args = pickle.loads(data)
            message = (RETURNED, fn(*args))
        except BaseException as error:  # everything goes back, pytest's outcomes included
            error.add_note(f"(raised in the isolated worker process)\n{traceback.format_exc()}")
            message = (RAISED, error)
        # Plain pickle, not multiprocessing's (which moves tensors to shared memory that dies
        # with this process).
        try:
            reply = pickle.dumps(message)
        except Exception as unsendable:
            reply = pickle.dumps((RAISED, RuntimeError(
                f"the isolated call's {message[0]} value could not be sent back: "
                f"{type(unsendable).__name__}: {unsendable}; it was {message[1]!r}")))
        connection.send_bytes(reply)


class Worker:
    """One persistent worker process (and the zygote it is forked from) for one key.

    ``warm_up``: a picklable ``(fn, args)`` run in every new worker before its first call, its
    outcome ignored, with a generous timeout: a kernel's lazy imports and JIT loading are not
    charged to the first call's timeout (a slow start would otherwise look like a hang)."""

    def __init__(self, preload: Sequence[str] = (), warm_up: Optional[Tuple[Callable, tuple]] = None):
        self.preload = tuple(preload)
        self.warm_up = warm_up
        self._lock = threading.Lock()  # one call at a time, whatever thread makes it
        self._zygote = None
        self._zygote_connection: Optional[Connection] = None
        self._pid: Optional[int] = None
        self._connection: Optional[Connection] = None
        self.starts = 0  # workers forked so far (the first start and every restart)

    def _ensure_zygote(self) -> None:
        if self._zygote is not None and self._zygote.poll() is None:
            return
        # A fresh interpreter (not multiprocessing's spawn, which would re-run the caller's
        # __main__ script), on the caller's sys.path.
        mine, theirs = socket.socketpair()
        preload = ("torch", __name__) + self.preload
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", f"import {__name__} as i; i.zygote_main({theirs.fileno()}, {preload!r})"],
            pass_fds=(theirs.fileno(),), env=environment, stdin=subprocess.DEVNULL)
        theirs.close()
        self._zygote_connection = Connection(mine.detach())

    def _start(self) -> None:
        self._start_bare()
        if self.warm_up is not None:
            self._exchange(pickle.dumps(self.warm_up), WARM_UP_TIMEOUT_S)
            if self._connection is None:  # it died warming up: start bare; the call will show why
                self._start_bare()

    def _start_bare(self) -> None:
        self._ensure_zygote()
        ours, theirs = socket.socketpair()
        self._zygote_connection.send(("fork", list(sys.path)))
        reduction.send_handle(self._zygote_connection, theirs.fileno(), self._zygote.pid)
        self._pid = self._zygote_connection.recv()
        theirs.close()
        self._connection = Connection(ours.detach())
        self.starts += 1

    def _reap(self) -> Optional[int]:
        """Wait for the (dead or killed) worker; its exit code."""
        pid, self._pid = self._pid, None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if pid is None:
            return None
        self._zygote_connection.send(("reap", pid))
        return self._zygote_connection.recv()

    def call(self, fn: Callable, args: tuple, timeout: float) -> Outcome:
        """``fn(*args)`` in the worker (started or restarted as needed)."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        request = pickle.dumps((fn, args))  # a caller's error (unpicklable fn) raises here
        with self._lock:
            if self._connection is None:
                self._start()
            return self._exchange(request, timeout)

    def _exchange(self, request: bytes, timeout: float) -> Outcome:
        try:
            self._connection.send_bytes(request)
            # poll() is also True at end of file: the worker died before answering.
            if not self._connection.poll(timeout):
                os.kill(self._pid, signal.SIGKILL)
                self._reap()
                return Outcome(TIMED_OUT, timeout_s=timeout)
            kind, payload = pickle.loads(self._connection.recv_bytes())
        except (EOFError, OSError):
            return _exit_outcome(self._reap())
        except Exception as unreadable:  # sent, but does not unpickle here (an exception's odd constructor)
            return Outcome(RAISED, error=RuntimeError(f"the isolated call's outcome could not be read back: "
                                                      f"{type(unreadable).__name__}: {unreadable}"))
        return Outcome(RETURNED, value=payload) if kind == RETURNED else Outcome(RAISED, error=payload)

    def close(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        if self._zygote is not None:
            self._zygote_connection.close()  # the zygote's loop ends at end of file
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None


_WORKERS: Dict[str, Worker] = {}
_LOCK = threading.Lock()


def worker(key: str, preload: Sequence[str] = (), warm_up: Optional[Tuple[Callable, tuple]] = None) -> Worker:
    """The persistent worker for ``key`` (made on first use, with ``preload`` imported in its
    zygote and ``warm_up`` run in each new worker: :class:`Worker`)."""
    with _LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = Worker(preload, warm_up)
        return _WORKERS[key]


def implementation_worker(name: str, preload: Sequence[str] = ()) -> Worker:
    """The worker of the implementation called ``name`` (every new one warmed up by a small call)."""
    return worker(name, preload, (warm_up_in_worker, (name,)))


def run_in_worker_of(implementation, fn: Callable, *args, timeout: Optional[float] = None) -> Outcome:
    """``fn(*args)`` in ``implementation``'s worker (a whole check, a replay: they inspect what
    the kernel itself returns, so they run beside it)."""
    call = implementation.roi_align
    preload = call.preload if isinstance(call, IsolatedRoIAlign) else ()
    return implementation_worker(implementation.name, preload).call(
        fn, args, settings.timeout_s if timeout is None else timeout)


def close_workers() -> None:
    """End every worker and zygote (the session's end; they also die with this process)."""
    with _LOCK:
        for w in _WORKERS.values():
            w.close()
        _WORKERS.clear()


def run_isolated(fn: Callable, *args, timeout: Optional[float] = None, key: str = "isolated") -> Outcome:
    """``fn(*args)`` in the worker for ``key``; ``fn`` and ``args`` must pickle (an
    implementation record pickles by name)."""
    return worker(key).call(fn, args, settings.timeout_s if timeout is None else timeout)


# --- the run's choices ------------------------------------------------------------------------

@dataclass
class Settings:
    """The run's isolation choices (set by the plugin and the commands: :func:`configure`)."""

    isolate: str = "third-party"
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    # Where a death's input is written (``properties/findings.py``); None: ./roialign-findings.
    findings: Optional[Path] = None


settings = Settings()


def configure(isolate: Optional[str] = None, timeout_s: Optional[float] = None,
              findings: Optional[Path] = None) -> Settings:
    """Set the run's choices (validated: one clear error each)."""
    if isolate is not None:
        if isolate not in ISOLATE_CHOICES:
            raise ValueError(f"isolate must be one of {', '.join(ISOLATE_CHOICES)}, got {isolate!r}")
        settings.isolate = isolate
    if timeout_s is not None:
        if not timeout_s > 0:
            raise ValueError(f"the call timeout must be a positive number of seconds, got {timeout_s!r}")
        settings.timeout_s = float(timeout_s)
    if findings is not None:
        settings.findings = Path(findings)
    return settings


def isolates(implementation) -> bool:
    """Whether the run's choice puts ``implementation``'s calls in a worker."""
    if settings.isolate == "none" or implementation.device != "cpu":
        return False
    return settings.isolate == "all" or not implementation.ours


def is_isolated(implementation) -> bool:
    """Whether ``implementation`` is a record made by :func:`isolated`."""
    return isinstance(getattr(implementation, "roi_align", None), IsolatedRoIAlign)


# --- isolated implementation records ----------------------------------------------------------

_RESOLVED: Dict[str, Any] = {}


def _record(name: str):
    """The (in-process) record called ``name``, in a worker."""
    if name not in _RESOLVED:
        from roialign_suite.implementations.registry import resolve

        _RESOLVED[name] = resolve(name)
    return _RESOLVED[name]


def forward_in_worker(name: str, input: torch.Tensor, boxes, params: tuple) -> torch.Tensor:
    """The kernel ``name``'s output on the call (run in its worker)."""
    out = _record(name).roi_align(input, boxes, *params)
    return out.detach() if isinstance(out, torch.Tensor) else out


def input_gradient_in_worker(name: str, input: torch.Tensor, boxes, params: tuple,
                             grad_output: torch.Tensor) -> Optional[torch.Tensor]:
    """The kernel ``name``'s own input gradient for ``grad_output`` (run in its worker)."""
    x = input.detach().requires_grad_(True)
    _record(name).roi_align(x, boxes, *params).backward(grad_output)
    return x.grad


def warm_up_in_worker(name: str) -> None:
    """One small call of the kernel ``name`` (imports and JIT loading done before the first real
    call; see :class:`Worker`): a 4x4 map, one box, in float32 where it takes it."""
    record = _record(name)
    dtype = torch.float32 if torch.float32 in record.dtypes else record.dtypes[0]
    record.roi_align(torch.zeros(1, 1, 4, 4, dtype=dtype), torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]], dtype=dtype), 2, 1.0, 2,
                     False)


def describe_call(input: torch.Tensor, boxes, params: tuple) -> str:
    """A short account of a call: the map's shape, dtype and strides, the boxes, the parameters."""
    box_rows = boxes.tolist() if isinstance(boxes, torch.Tensor) else [b.tolist() for b in boxes]
    output_size, spatial_scale, sampling_ratio, aligned = params
    return (f"features {list(input.shape)} {str(input.dtype).removeprefix('torch.')} strides {list(input.stride())}, "
            f"boxes {box_rows}, output_size={output_size!r}, spatial_scale={spatial_scale!r}, "
            f"sampling_ratio={sampling_ratio!r}, aligned={aligned!r}")


class IsolatedRoIAlign:
    """``roi_align`` of the implementation ``name`` (torchvision's signature), each call run in its
    worker; differentiable through the kernel's own backward (run there too) when ``differentiable``.
    A death raises :class:`Crash` naming the call, after the input is written to the findings."""

    def __init__(self, name: str, differentiable: bool, preload: Sequence[str] = ()):
        self.name, self.differentiable, self.preload = name, differentiable, tuple(preload)
        self.__name__ = f"isolated {name}"

    def __repr__(self) -> str:
        return f"<{self.__name__}>"

    def __call__(self, input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        params = (output_size, spatial_scale, sampling_ratio, aligned)
        if self.differentiable and torch.is_grad_enabled() and input.requires_grad:
            return _ThroughWorker.apply(input, self, boxes, params)
        return self.run(forward_in_worker, "forward", input, boxes, params)

    def run(self, fn: Callable, direction: str, input, boxes, params, *rest):
        outcome = implementation_worker(self.name, self.preload).call(
            fn, (self.name, input.detach(), boxes, params) + rest, settings.timeout_s)
        if not outcome.died:
            return outcome.result()
        written = _record_death(self.name, input.detach(), boxes, params, outcome, direction)
        raise Crash(f"{self.name} {outcome.describe()} in its {direction} on "
                    f"{describe_call(input, boxes, params)}{written}", outcome)


class _ThroughWorker(torch.autograd.Function):
    """Forward and backward of an :class:`IsolatedRoIAlign`, each in its worker."""

    @staticmethod
    def forward(ctx, input, call: IsolatedRoIAlign, boxes, params):
        ctx.save_for_backward(input)
        ctx.call, ctx.boxes, ctx.params = call, boxes, params
        return call.run(forward_in_worker, "forward", input, boxes, params)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad = ctx.call.run(input_gradient_in_worker, "backward", input, ctx.boxes, ctx.params,
                            grad_output.contiguous())
        return grad, None, None, None


def isolated(implementation):
    """``implementation`` with every call run in its worker (``native`` dropped: an isolated record
    is for checking, never timing). It pickles by name, as the record itself does."""
    module = getattr(implementation.roi_align, "__module__", None)
    preload = ((module,) if module and module != "__main__" else ()) + implementation.preload
    call = IsolatedRoIAlign(implementation.name, implementation.differentiable, preload)
    return dataclasses.replace(implementation, roi_align=call, native=None)


def _record_death(name: str, input: torch.Tensor, boxes, params: tuple, outcome: Outcome, direction: str) -> str:
    """Write the call that died to the run's findings; ``"; corpus entry written to PATH"`` (or why not)."""
    from roialign_suite.properties import findings

    try:
        path = findings.record_call_death(name, input, boxes, params, outcome, direction)
    except Exception as error:  # the finding is still reported, with its input, in the failure
        return f"; the corpus entry could not be written ({type(error).__name__}: {error})"
    return f"; corpus entry written to {path}"
