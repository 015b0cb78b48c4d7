"""Half-precision features against float32: median seconds of our RoIAlign on the P2 box head.

``python -m roialign_suite.benchmarks.half_precision [--threads 2] [--rounds 7]``
prints one line per dtype and direction: the ``box-head-p2`` workload
(2x256x200x304 map, 1024 RoIs, 7x7, sampling 2) with a channels_last map,
forward and forward+backward, after a warm-up: the median wall time over
``--rounds``, and the median process CPU time (all threads), which a machine
shared with other work inflates less. A measurement to read, not a test:
nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from roialign_suite import impl
from roialign_suite.benchmarks.runners import thread_count
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
            wall = {dtype: [] for dtype in DTYPES}
            cpu = {dtype: [] for dtype in DTYPES}
            for _ in range(args.rounds):
                for dtype, call in calls.items():
                    start_wall, start_cpu = time.perf_counter(), time.process_time()
                    call()
                    wall[dtype].append(time.perf_counter() - start_wall)
                    cpu[dtype].append(time.process_time() - start_cpu)
            base_wall, base_cpu = statistics.median(wall[torch.float32]), statistics.median(cpu[torch.float32])
            for dtype in DTYPES:
                seconds, cpu_seconds = statistics.median(wall[dtype]), statistics.median(cpu[dtype])
                direction = "fwd+bwd" if backward else "fwd"
                print(f"{direction:8s} {str(dtype):15s} wall {seconds * 1e3:7.1f} ms (x{seconds / base_wall:.2f} of float32)"
                      f"  cpu {cpu_seconds * 1e3:7.1f} ms (x{cpu_seconds / base_cpu:.2f})", flush=True)


if __name__ == "__main__":
    main()
