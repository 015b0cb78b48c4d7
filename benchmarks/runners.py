"""What is timed: one zero-argument call per (workload, implementation).

Inputs are moved to the implementation's device and every module is built
before the call is made, so the timed region holds only the RoIAlign /
pooler / extractor work (and, for ``-fwdbwd``, the gradient w.r.t. the
features), plus ``torch.cuda.synchronize()`` on a GPU; for a model workload,
the model's train step or eval forward (:class:`ModelStep`).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numba
import torch
from torch import Tensor

from roialign_suite import impl
from roialign_suite.benchmarks.workloads import Inputs, Workload
from roialign_suite.implementations import registry

REPRESENTATION_SIZE = 1024  # FPN2MLPFeatureExtractor's fc6/fc7 width


def candidates(targets: Sequence[str] = (), target_device: str = "cpu") -> List[registry.Implementation]:
    """The implementations timed: the registry's (less those it marks ``not_timed``) and one per ``MODULE:ATTR`` target.

    Each is timed through ``Implementation.timed_call``, on tensors already on its device.
    """
    return [e for e in registry.builtin() if e.not_timed is None] + [
        registry.target(spec, target_device) for spec in targets
    ]


def left_out(workload: Workload, candidate: registry.Implementation) -> Optional[str]:
    """Why ``candidate`` is not timed on ``workload`` (its record rules it out), or None when it is."""
    if candidate.not_timed:
        return f"{candidate.name} is not timed: {candidate.not_timed}"
    if candidate.unavailable:
        return f"{candidate.name}: {candidate.unavailable}"
    if workload.torch_dtype not in candidate.dtypes:
        return f"{candidate.name} does not take {workload.dtype} (its record)"
    if workload.backward and not candidate.differentiable:
        return f"{candidate.name} is forward-only"
    if workload.threads is not None and workload.threads > max_threads():
        return f"{workload.threads} threads asked, NUMBA_NUM_THREADS is {max_threads()}"
    return None


def pooler_class(roi_align: Callable) -> type:
    """``impl.Pooler`` with its per-level RoIAlign swapped for ``roi_align``.

    A third-party ``roi_align`` is not called for a level no RoI goes to (that level's rows are
    empty): MNN refuses K = 0 (``properties/xfails/mnn.txt``). At the workloads' full sizes every
    level gets RoIs, so only the quick (toy) runs, whose small boxes all go to P2, skip calls.
    """
    if roi_align is impl.roi_align:
        return type("BenchPooler", (impl.Pooler,), {"roi_align": staticmethod(roi_align)})

    def per_level(input: Tensor, rois: Tensor, output_size, *args) -> Tensor:
        if rois.shape[0] == 0:
            return input.new_zeros((0, input.shape[1], *output_size))
        return roi_align(input, rois, output_size, *args)

    return type("BenchPooler", (impl.Pooler,), {"roi_align": staticmethod(per_level)})


def levels_of(workload: Workload, inputs: Inputs) -> Tensor:
    """0-based pyramid level of each RoI, as ``impl.Pooler`` assigns them (all 0 for one map)."""
    if workload.op == "roi_align":
        return torch.zeros(inputs.rois.shape[0], dtype=torch.int64)
    return _our_pooler(workload).levels(inputs.rois)


def _our_pooler(workload: Workload, roi_align: Callable = impl.roi_align) -> impl.Pooler:
    return pooler_class(roi_align)(workload.output_size, workload.scales, workload.sampling_ratio, workload.aligned)


def forward_of(workload: Workload, candidate: registry.Implementation) -> Callable:
    """``(features, rois) -> output`` for the workload's op, built outside the timed region."""
    w = workload
    if w.op == "roi_align":
        fn = candidate.timed_call
        return lambda features, rois: fn(features[0], rois, w.output_size, w.scales[0], w.sampling_ratio, w.aligned)
    if w.op == "pooler":
        return _our_pooler(w, candidate.timed_call)
    if w.op == "extractor":
        if candidate.pooler is not None:
            pooler = candidate.pooler(w.output_size, w.sampling_ratio, w.scales)
        else:
            pooler = _our_pooler(w, candidate.timed_call)
        torch.manual_seed(0)  # the same fc weights for every candidate
        extractor = impl.FPN2MLPFeatureExtractor(pooler, w.channels, w.output_size, REPRESENTATION_SIZE)
        return extractor.to(candidate.device)
    raise ValueError(f"unknown workload op {w.op!r}")


def output_shape(workload: Workload, num_rois: int) -> Tuple[int, ...]:
    """Shape of one call's output for ``num_rois`` RoIs."""
    if workload.op == "extractor":
        return (num_rois, REPRESENTATION_SIZE)
    return (num_rois, workload.channels, workload.output_size, workload.output_size)


class TimedCall:
    """Forward (and backward) of ``workload`` with ``candidate``, everything built up front.

    ``call()`` is what is timed; ``call.first(count)`` runs the same on the
    first ``count`` RoIs only (an untimed warm-up).
    """

    def __init__(self, workload: Workload, candidate: registry.Implementation, inputs: Inputs):
        device = candidate.device
        self.backward = workload.backward
        self.features = [f.to(device) for f in inputs.features]
        if self.backward:
            self.features = [f.detach().requires_grad_() for f in self.features]
        self.rois = inputs.rois.to(device)
        # The extractor's output is its float32 fc7; otherwise the output has the features' dtype.
        dtype = torch.float32 if workload.op == "extractor" else workload.torch_dtype
        self.grad_output = torch.randn(output_shape(workload, self.rois.shape[0]), device=device).to(dtype)
        self.forward = forward_of(workload, candidate)
        self.synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def __call__(self) -> None:
        self._run(self.rois, self.grad_output)

    def first(self, count: int) -> None:
        self._run(self.rois[:count], self.grad_output[:count])

    def _run(self, rois: Tensor, grad_output: Tensor) -> None:
        output = self.forward(self.features, rois)
        if self.backward:
            # autograd.grad, not .backward(): no .grad accumulation across rounds.
            torch.autograd.grad(output, self.features, grad_output, allow_unused=True)
        self.synchronize()


class ModelStep:
    """One Mask R-CNN train step (forward + backward of the summed losses) or eval forward.

    Gradients are reset (to ``None``) and the RNG reseeded first, so every
    call samples the same RoIs and does the same work. ``seconds`` adds up
    the time of the calls since :meth:`reset`.
    """

    def __init__(self, model: torch.nn.Module, images: List[Tensor], targets: List[dict], train: bool):
        self.model, self.images, self.targets, self.train = model, images, targets, train
        self.seconds = 0.0

    def reset(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> None:
        start = time.perf_counter()
        self.model.train(self.train)
        self.model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        if self.train:
            losses = self.model(self.images, self.targets)
            sum(losses.values()).backward()
        else:
            with torch.no_grad():
                self.model(self.images)
        self.seconds += time.perf_counter() - start


def seconds_of(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def rounds_for(seconds_per_call: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds that fit ``budget_s``, at least ``min_rounds`` and at most ``max_rounds``."""
    fit = math.floor(budget_s / max(seconds_per_call, 1e-9))
    return max(min_rounds, min(max_rounds, fit))


@contextlib.contextmanager
def thread_count(threads: Optional[int]) -> Iterator[None]:
    """Run torch, and so our kernels (they follow it), on ``threads`` threads (``None``: leave as is), then restore."""
    if threads is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def max_threads() -> int:
    """The most threads Numba may use in this process (``NUMBA_NUM_THREADS``)."""
    return numba.config.NUMBA_NUM_THREADS
