"""Half-precision features against float32: median seconds of our RoIAlign on the P2 box head.

``python -m roialign_suite.benchmarks.half_precision [--threads 2] [--rounds 7]``
prints one line per dtype and direction: the ``box-head-p2`` workload
(2x256x200x304 map, 1024 RoIs, 7x7, sampling 2) with a channels_last map,
forward and forward+backward, the median over ``--rounds`` after a warm-up.
A measurement to read, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from roialign_suite import impl
from roialign_suite.benchmarks.runners import seconds_of, thread_count
from roialign_suite.benchmarks.workloads import all_workloads, build_inputs

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def timed_call(dtype: torch.dtype, backward: bool):
    """One forward (and backward) of the channels_last P2 box head in ``dtype``, inputs built up front."""
    workload = next(w for w in all_workloads() if w.name == "box-head-p2-fwd")
    workload = replace(workload, channels_last=True, backward=backward)
    inputs = build_inputs(workload)
    features = inputs.features[0].to(dtype)  # .to keeps channels_last
    rois = inputs.rois.to(dtype)
    features.requires_grad_(backward)
    grad_output = torch.randn((rois.shape[0], workload.channels, 7, 7), generator=torch.Generator().manual_seed(0)).to(dtype)

    def call():
        out = impl.roi_align(features, rois, workload.output_size, workload.scales[0], workload.sampling_ratio,
                             workload.aligned)
        if backward:
            torch.autograd.grad(out, features, grad_output)

    return call


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with thread_count(args.threads):
        for backward in (False, True):
            calls = {dtype: timed_call(dtype, backward) for dtype in DTYPES}
            for call in calls.values():
                call()  # compile and warm the scratch buffers
            # Rounds interleave the dtypes, so a change in machine load hits all alike.
            times = {dtype: [] for dtype in DTYPES}
            for _ in range(args.rounds):
                for dtype, call in calls.items():
                    times[dtype].append(seconds_of(call))
            base = statistics.median(times[torch.float32])
            for dtype in DTYPES:
                seconds = statistics.median(times[dtype])
                direction = "fwd+bwd" if backward else "fwd"
                print(f"{direction:8s} {str(dtype):15s} {seconds * 1e3:8.1f} ms  x{seconds / base:.2f} of float32",
                      flush=True)


if __name__ == "__main__":
    main()
