"""Numba's threading layer for our kernels, and the threads each kernel call runs on.

Numba runs every ``parallel=True`` kernel in a process on one threading
layer, fixed when its threads first start. Left to itself it takes the first
that loads of TBB, OpenMP and workqueue; TBB's library is rarely on the
loader's path, so it ends up on GNU OpenMP, which breaks the ways torch users
run us: forked DataLoader workers die once the parent has run a kernel (GNU
OpenMP is not fork-safe), and starting it raises torch's own OpenMP thread
count. Workqueue is fork-safe but aborts the process when two Python threads
run kernels at once. TBB is thread-safe, and fork-safe for a fork from the
thread that started it while no other live thread has run a kernel (see
:class:`_Calls`), so at
``roialign_suite.impl`` import (before any kernel runs) this module loads
libtbb from the installed ``tbb`` package and asks Numba for TBB; if that
fails, it asks for workqueue and :func:`kernel_threads` lets one of our
kernel calls run at a time. OpenMP is never our choice.

A layer named by the user (``NUMBA_THREADING_LAYER`` or Numba's config file)
is respected: it is process-wide and may be meant for other Numba code. We
still make TBB loadable for the choices that try it, and serialise our calls
whenever the layer that runs is workqueue. ``ROIALIGN_NO_TBB=1`` skips TBB
(the fallback, on purpose). :func:`describe` says which layer runs and why.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import Iterator, Optional

import numba
import torch

NO_TBB_ENV = "ROIALIGN_NO_TBB"

# Numba's tbbpool refuses TBB_INTERFACE_VERSION below this (oneTBB 2021.6).
MIN_TBB_INTERFACE = 12060

# The soname Numba's tbbpool extension is linked against, per platform.
_LIBTBB = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


@dataclass(frozen=True)
class LayerChoice:
    """What was decided at import: the layer Numba was asked for (``None``: its
    threads were already running, nothing could be asked) and why."""

    requested: Optional[str]
    why: str


def _tbb_disabled() -> bool:
    value = os.environ.get(NO_TBB_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{NO_TBB_ENV} must be 0 or 1 (1: never load TBB), got {value!r}")
    return value == "1"


def _libtbb_candidates() -> list:
    """libtbb paths to try: the ``tbb`` distribution's own copy, then the bare soname (the loader's search path)."""
    soname = _LIBTBB.get(sys.platform, _LIBTBB["linux"])
    try:
        dist = importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return [soname]
    return [os.path.normpath(dist.locate_file(f)) for f in dist.files or () if f.name == soname] + [soname]


def _load_tbb() -> str:
    """Load libtbb process-wide, then Numba's tbbpool extension against it; returns what was loaded.

    Once a library with this soname is loaded, the dynamic loader resolves
    tbbpool's dependency and Numba's own version check to it, so no
    LD_LIBRARY_PATH is needed. Raises ImportError saying why TBB is unusable.
    """
    failures = []
    for candidate in _libtbb_candidates():
        try:
            lib = ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
        except OSError as error:
            failures.append(str(error))
            continue
        try:
            interface = lib.TBB_runtime_interface_version()
        except AttributeError:
            raise ImportError(f"{candidate} is not oneTBB (no TBB_runtime_interface_version)") from None
        if interface < MIN_TBB_INTERFACE:
            raise ImportError(f"{candidate} has TBB interface {interface}; Numba needs >= {MIN_TBB_INTERFACE}")
        from numba.np.ufunc import tbbpool  # noqa: F401 (fails here, not at the first kernel, if it cannot link)

        return f"{candidate} (interface {interface})"
    raise ImportError("libtbb not found: " + "; ".join(failures))


def _running_layer() -> Optional[str]:
    try:
        return numba.threading_layer()
    except ValueError:  # Numba's threads have not started
        return None


def _start() -> Optional[str]:
    """Start Numba's threads on the configured layer; ``None``, or why it could not."""
    try:
        numba.get_num_threads()
    except ValueError as error:
        return " ".join(str(error).split())
    _calls.starter = threading.current_thread()
    return None


def _choose() -> LayerChoice:
    """Ask Numba for a layer and start its threads (see the module docstring).

    Starting them here, not at the first kernel, makes the importing thread
    (normally the main one) the thread Numba's TBB pool belongs to: only a
    fork from that thread shuts TBB's workers down cleanly first.
    """
    running = _running_layer()
    if running is not None:
        if running == "omp":
            warnings.warn(
                "Numba's threads were started on OpenMP before roialign_suite.impl was imported; "
                "forked workers (DataLoader, multiprocessing) that run our kernels after the parent did will die. "
                "Import roialign_suite.impl before running other Numba parallel code.",
                RuntimeWarning,
                stacklevel=3,
            )
        return LayerChoice(None, f"Numba's threads were already running on {running} when we were imported")
    asked = str(numba.config.THREADING_LAYER).lower()
    if asked != "default":
        if asked not in ("omp", "workqueue") and not _tbb_disabled():
            with contextlib.suppress(ImportError):
                _load_tbb()
        failure = _start()
        why = f"NUMBA_THREADING_LAYER={asked} chosen by the user"
        return LayerChoice(asked, f"{why}; {failure}" if failure else why)
    if _tbb_disabled():
        why = f"{NO_TBB_ENV}=1"
    else:
        try:
            loaded = _load_tbb()
        except ImportError as error:
            why = f"TBB unusable: {error}"
        else:
            numba.config.THREADING_LAYER = "tbb"
            failure = _start()
            if failure is None:
                return LayerChoice("tbb", f"libtbb {loaded}")
            why = f"Numba could not start TBB: {failure}"
    numba.config.THREADING_LAYER = "workqueue"
    _start()  # built into Numba: cannot fail to load
    return LayerChoice("workqueue", f"{why}; our kernel calls run one at a time")


class _Calls:
    """Our kernel calls in flight, process-wide, and the threads that made them.

    A fork waits until none runs and holds new ones back until it is done, so
    Numba's fork handlers never see a kernel mid-flight. ``exclusive`` calls
    (workqueue) run only while no other thread's call does; a thread may nest
    calls. TBB can only shut down for a fork, as Numba's handler asks it to,
    from the thread that started Numba's threads (``starter``) while no other
    live thread has run a kernel; a fork without that warns.
    """

    def __init__(self):
        self.condition = threading.Condition()
        self.running = 0
        self.mine = threading.local()
        self.callers = weakref.WeakSet()
        self.starter: Optional[threading.Thread] = None

    def _depth(self) -> int:
        return getattr(self.mine, "depth", 0)

    @contextlib.contextmanager
    def enter(self, exclusive: bool) -> Iterator[None]:
        depth = self._depth()
        with self.condition:
            if exclusive and depth == 0:
                self.condition.wait_for(lambda: self.running == 0)
            self.running += 1
            self.callers.add(threading.current_thread())
        self.mine.depth = depth + 1
        try:
            yield
        finally:
            self.mine.depth = depth
            with self.condition:
                self.running -= 1
                self.condition.notify_all()

    def before_fork(self) -> None:
        self.condition.acquire()
        own = self._depth()
        self.condition.wait_for(lambda: self.running == own)
        if _running_layer() != "tbb":
            return
        me = threading.current_thread()
        others = [t.name for t in self.callers if t is not me and t.is_alive()]
        if others:
            problem = f"other threads that ran roialign kernels are alive ({', '.join(others)})"
        elif self.starter is not None and me is not self.starter:
            problem = f"it is not the thread that started Numba's TBB pool ({self.starter.name})"
        else:
            return
        warnings.warn(
            f"fork() while {problem}: TBB cannot shut down for it, and a child that runs our kernels may hang. "
            "Use the 'spawn' or 'forkserver' start method, or fork and run the kernels in one thread only.",
            RuntimeWarning,
            stacklevel=2,
        )

    def after_fork_in_parent(self) -> None:
        self.condition.release()

    def after_fork_in_child(self) -> None:
        own = self._depth()
        self.condition = threading.Condition()
        self.running = own


_calls = _Calls()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_calls.before_fork,
        after_in_parent=_calls.after_fork_in_parent,
        after_in_child=_calls.after_fork_in_child,
    )

CHOICE = _choose()


def threads_for_kernels() -> int:
    """The threads our kernels run on: ``torch.get_num_threads()``, at most ``NUMBA_NUM_THREADS``."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def kernel_threads() -> Iterator[int]:
    """Context for calling our parallel kernels; yields the thread count they run on.

    Sets Numba's thread count to :func:`threads_for_kernels` for the block
    and restores it after. Numba's count is per Python thread, so concurrent
    callers do not disturb one another, and torch's count is only read,
    never changed. On workqueue the block waits until no other thread's
    block runs. A fork waits for every block to end.
    """
    threads = threads_for_kernels()
    previous = numba.get_num_threads()  # starts Numba's threads on first use
    with _calls.enter(exclusive=numba.threading_layer() == "workqueue"):
        numba.set_num_threads(threads)
        try:
            yield threads
        finally:
            numba.set_num_threads(previous)


def threading_layer() -> str:
    """The layer Numba runs our kernels on; raises Numba's ValueError if the requested one cannot load."""
    numba.get_num_threads()
    return numba.threading_layer()


def describe() -> str:
    """One line for reports: the layer, whether our calls are serialised, and why."""
    try:
        layer = threading_layer()
    except ValueError:
        return f"no threading layer: {CHOICE.why}"
    notes = {"workqueue": " (our calls serialised)", "omp": " (not fork-safe)"}.get(layer, "")
    return f"{layer}{notes}: {CHOICE.why}"
