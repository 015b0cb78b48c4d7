"""Risky calls of a third-party kernel run in a child process, so that a crash is a finding, not the end of the run.

A kernel may kill its process on valid input: torchvision's CPU RoIAlign
dies with SIGSEGV on a map with H = 0 or W = 0. :func:`run_isolated` calls
``fn(*args)`` in a child process and returns an :class:`Outcome`: what it
returned or raised (sent back pickled through a pipe), or that the child died
(its signal or exit status), or ran past ``timeout`` seconds (then killed).

Which calls: :func:`needs_isolation`: a third-party kernel (not ``ours``: our
kernel must never crash, and runs in-process) on a case with a zero size (N,
C, H, W or K = 0), the shapes that have crashed kernels; a test may also call
:func:`run_isolated` itself (the integer-dtype refusal).

How the child starts:

- CPU implementations: ``fork`` of the calling process (cheap, and the child
  has the parent's loaded kernels). The child first sets
  ``torch.set_num_threads(1)``: GNU OpenMP's thread pool does not survive a
  fork and the child's first parallel region would wait for it for ever
  (measured: ``(x * 3).sum()`` on a large tensor hangs in a forked child
  after the parent ran one). Numba's TBB layer supports a fork from the main thread.
- other devices: ``spawn`` (a fresh interpreter: a CUDA context cannot be
  used in a forked child). ``fn`` and ``args`` must then pickle; an
  :class:`~roialign_suite.implementations.records.Implementation` pickles
  by name and is rebuilt in the child (``implementations.registry.resolve``).

On platforms without ``fork`` every call spawns.
"""
from __future__ import annotations

import faulthandler
import multiprocessing
import pickle
import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from roialign_suite.properties.strategies import zero_sizes

# Seconds an isolated call may take. A forked child does small work in well
# under a second; a spawned one first imports torch and the suite (~10 s).
DEFAULT_TIMEOUT_S = 120.0

RETURNED, RAISED, CRASHED, TIMED_OUT = "returned", "raised", "crashed", "timed out"


class Crash(AssertionError):
    """An isolated call killed its process or hung: a finding (fails the test that made the call)."""


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
        """The child crashed or hung (a finding), rather than returning or raising."""
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
        """The returned value; re-raises what the child raised; :class:`Crash` naming ``what`` if it died."""
        if self.kind == RETURNED:
            return self.value
        if self.kind == RAISED:
            raise self.error
        raise Crash(f"{what} {self.describe()}")


def start_method(device: str = "cpu") -> str:
    """``fork`` for the CPU where the platform has it, else ``spawn`` (see the module docstring)."""
    if device == "cpu" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def _child(connection, fn: Callable, args: tuple) -> None:
    # A death is reported by the parent (with the case); the inherited faulthandler (pytest
    # enables it) would print the child's stack to the terminal on every death while shrinking.
    faulthandler.disable()
    torch.set_num_threads(1)
    try:
        message = (RETURNED, fn(*args))
    except BaseException as error:  # everything goes back to the parent, pytest's outcomes included
        error.add_note(f"(raised in the isolated child process)\n{traceback.format_exc()}")
        message = (RAISED, error)
    # Plain pickle, not the connection's: multiprocessing's pickler moves tensors to shared
    # memory that dies with this process.
    try:
        data = pickle.dumps(message)
    except Exception as unsendable:
        data = pickle.dumps((RAISED, RuntimeError(f"the isolated call's {message[0]} value could not be sent back: "
                                                  f"{type(unsendable).__name__}: {unsendable}; it was {message[1]!r}")))
    connection.send_bytes(data)
    connection.close()


def run_isolated(fn: Callable, *args, device: str = "cpu", timeout: float = DEFAULT_TIMEOUT_S,
                 method: Optional[str] = None) -> Outcome:
    """``fn(*args)`` in a child process (``method``: ``fork`` or ``spawn``, default :func:`start_method`)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    context = multiprocessing.get_context(method or start_method(device))
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, fn, args), daemon=True)
    child.start()
    sender.close()
    try:
        # poll() is also True at end of file: the child died before sending.
        if not receiver.poll(timeout):
            child.kill()
            child.join()
            return Outcome(TIMED_OUT, timeout_s=timeout)
        try:
            kind, payload = pickle.loads(receiver.recv_bytes())
        except EOFError:
            kind, payload = None, None
        except Exception as unreadable:  # sent, but does not unpickle here (an exception's odd constructor)
            kind, payload = RAISED, RuntimeError(f"the isolated call's outcome could not be read back: "
                                                 f"{type(unreadable).__name__}: {unreadable}")
    finally:
        receiver.close()
    child.join()
    if kind == RETURNED:
        return Outcome(RETURNED, value=payload)
    if kind == RAISED:
        return Outcome(RAISED, error=payload)
    code = child.exitcode
    if code is not None and code < 0:
        return Outcome(CRASHED, signal=signal.Signals(-code).name)
    return Outcome(CRASHED, exit_status=code)


def needs_isolation(implementation, case) -> bool:
    """Third-party kernels run zero-size cases in a child; ours runs everything in-process."""
    return not implementation.ours and bool(zero_sizes(case))
