"""Intel Extension for PyTorch's RoIAlign and ours, timed in one process (an optional env outside CI).

IPEX 2.8 needs torch 2.8, not the suite's pinned torch, so this runs in its
own environment (``tox -e ipex``: torch 2.8.0, torchvision 0.23.0,
intel-extension-for-pytorch 2.8.0; the suite from the checkout on
``PYTHONPATH``). Importing IPEX replaces torchvision's CPU ``roi_align``
with IPEX's kernel (its ATen registration), which is what is timed as
``ipex``; ``ours`` is ``impl.roi_align`` / ``impl.Pooler``.

    python -m roialign_suite.benchmarks.ipex [--rounds 7] [--threads 2]

For each workload (the benchmark suite's box head on P2 and FPN pooler,
1024 RoIs, float32, contiguous and channels_last maps; forward, and
forward+backward on channels_last), the two implementations run in
alternating rounds (so a noisy neighbour slows both alike) and the table
gives their medians and IPEX's over ours; then each one's max |error|
against the float64 reference on the P2 map and its first 64 RoIs.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from roialign_suite import impl, options
from roialign_suite.benchmarks import targets
from roialign_suite.benchmarks.runners import pooler_class
from roialign_suite.benchmarks.workloads import Workload, all_workloads, build_inputs

WORKLOADS = ("box-head-p2-fwd", "box-head-fpn-pooler-fwd")


def ipex_roi_align() -> Callable:
    """torchvision's ``roi_align`` once IPEX has replaced its CPU kernel."""
    import intel_extension_for_pytorch  # noqa: F401  (registers its kernel for torchvision::roi_align)
    import torchvision

    return torchvision.ops.roi_align


def _call(workload: Workload, name: str, inputs, backward: bool) -> Callable[[], torch.Tensor]:
    features = [f.detach().requires_grad_(backward) for f in inputs.features]
    params = (workload.output_size, workload.scales[0], workload.sampling_ratio, workload.aligned)
    if workload.op == "roi_align":
        align = impl.roi_align if name == "ours" else ipex_roi_align()
        forward = lambda: align(features[0], inputs.rois, *params)  # noqa: E731
    else:
        # As the benchmark suite times a pooler: ours, or ours with IPEX's RoIAlign per level.
        pooler = pooler_class(impl.roi_align if name == "ours" else ipex_roi_align())(
            workload.output_size, workload.scales, workload.sampling_ratio, workload.aligned)
        forward = lambda: pooler(features, inputs.boxes)  # noqa: E731
    if not backward:
        return forward
    return lambda: torch.autograd.grad(forward().sum(), features)


def measure(workload: Workload, rounds: int) -> Dict[str, float]:
    """Median ms of each implementation on ``workload``, in alternating rounds."""
    inputs = build_inputs(workload)
    calls = {name: _call(workload, name, inputs, workload.backward) for name in ("ours", "ipex")}
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm: compile, caches
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def accuracy(rois: int = 64) -> Dict[str, float]:
    """Max |error| of each implementation against the float64 reference: the P2 box head's map and its
    first ``rois`` RoIs (the reference is a per-box loop), float32."""
    from roialign_suite.reference.roi_align import roi_align as reference_roi_align

    workload = {w.name: w for w in all_workloads()}["box-head-p2-fwd"]
    inputs = build_inputs(workload)
    features, boxes = inputs.features[0], inputs.rois[:rois]
    params = (workload.output_size, workload.scales[0], workload.sampling_ratio, workload.aligned)
    expected = reference_roi_align(features.double(), boxes.double(), *params)
    return {name: float((align(features, boxes, *params).double() - expected).abs().max())
            for name, align in (("ours", impl.roi_align), ("ipex", ipex_roi_align()))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="python -m roialign_suite.benchmarks.ipex", description=__doc__.splitlines()[0])
    options.add_to_argparse(parser, options.IPEX_BENCH, rounds=7)
    parser.add_argument("--no-check", action="store_true", help="skip the accuracy check against the float64 reference")
    args = parser.parse_args(argv)
    args.rounds, args.threads = args.roialign_rounds, args.roialign_threads
    torch.set_num_threads(args.threads)
    import intel_extension_for_pytorch as ipex

    print(f"torch {torch.__version__}, intel-extension-for-pytorch {ipex.__version__}, {args.threads} threads, "
          f"median of {args.rounds} alternating rounds")
    named = {w.name: w for w in all_workloads()}
    cases = []
    for name in WORKLOADS:
        base = named[name]
        cases += [base, dataclasses.replace(base, name=f"{name}-channels-last", channels_last=True)]
        cases.append(dataclasses.replace(base, name=f"{name[:-len('-fwd')]}-fwdbwd-channels-last", channels_last=True,
                                         backward=True))
    goal = targets.IPEX_SPEEDUP
    print(f"{'workload':42s} {'ours ms':>9s} {'ipex ms':>9s} {'ipex/ours':>9s}  target >= {goal:g}x")
    for workload in cases:
        row = measure(workload, args.rounds)
        ratio = row["ipex"] / row["ours"]
        print(f"{workload.name:42s} {row['ours']:9.1f} {row['ipex']:9.1f} {ratio:8.2f}x  "
              f"{'met' if ratio >= goal else 'missed'}", flush=True)
    if not args.no_check:
        errors = accuracy()
        print("max |error| vs the float64 reference (P2, first 64 RoIs, float32): "
              + ", ".join(f"{name} {value:.3e}" for name, value in errors.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
