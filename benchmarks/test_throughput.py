"""Every workload x implementation, side by side in one pytest-benchmark group per workload.

Inputs are built and moved to the device, and modules constructed, outside
the timed region; Numba is compiled before anything is timed. An untimed
warm-up (:func:`warm_up`) sizes the number of rounds to the time budget.
After the timed rounds, each case's error against the float64 reference
(:mod:`~roialign_suite.benchmarks.accuracy`) goes into its ``extra_info``.
"""
from __future__ import annotations

import functools

import pytest

from roialign_suite.benchmarks import accuracy, bandwidth, figures, traffic
from roialign_suite.benchmarks.runners import TimedCall, left_out, levels_of, rounds_for, seconds_of, thread_count
from roialign_suite.benchmarks.workloads import build_inputs

PROBE_FRACTION = 16


@functools.lru_cache(maxsize=1)
def _inputs_and_bytes(workload):
    # Cases of one workload run back to back: keep only the current one's inputs.
    inputs = build_inputs(workload)
    return inputs, bandwidth.bytes_moved(workload, inputs, levels_of(workload, inputs)), bandwidth.floor_bytes(workload, inputs)


@functools.lru_cache(maxsize=1)
def _our_traffic(workload):
    """Our forward's modelled traffic on the workload (benchmarks/traffic.py), once per workload."""
    inputs = _inputs_and_bytes(workload)[0]
    return traffic.forward_traffic(workload, inputs, levels_of(workload, inputs).numpy())


@functools.lru_cache(maxsize=1)
def _reference(workload):
    """The float64 reference on the workload's compared slice (:mod:`accuracy`), once per workload."""
    return accuracy.reference(workload, _inputs_and_bytes(workload)[0])


def warm_up(call: TimedCall, num_rois: int, budget_s: float) -> float:
    """Untimed warm-up; returns the expected seconds of one full call.

    Calls on 1/``PROBE_FRACTION`` and 2/``PROBE_FRACTION`` of the RoIs warm
    caches, allocator and runtime sessions, and a straight line through
    their times (a fixed cost per call plus a cost per RoI) estimates the full
    call; a case expected to fit the budget then also runs one full call,
    whose time replaces the estimate. A slow case (seconds per call) is thus
    never run in full outside its timed round, while a fast one with a large
    fixed cost (layout conversion of whole maps) is not mistaken for slow and
    timed cold.
    """
    small = max(num_rois // PROBE_FRACTION, 1)
    large = min(2 * small, num_rois)
    small_s = seconds_of(lambda: call.first(small))
    large_s = seconds_of(lambda: call.first(large))
    per_roi = max(large_s - small_s, 0.0) / max(large - small, 1)
    estimate = max(large_s + per_roi * (num_rois - large), large_s)
    if estimate < budget_s:
        estimate = seconds_of(call)
    return estimate


def test_throughput(benchmark, case, roialign_timing_plan, roialign_record, roialign_jit_warm):
    workload, candidate = case
    reason = left_out(workload, candidate)
    if reason:
        pytest.skip(reason)
    inputs, nbytes, floor_bytes = _inputs_and_bytes(workload)
    benchmark.group = workload.name
    budget_s, min_rounds, max_rounds = roialign_timing_plan
    with thread_count(workload.threads):
        call = TimedCall(workload, candidate, inputs)
        seconds_per_call = warm_up(call, workload.num_rois, budget_s)
        rounds = rounds_for(seconds_per_call, budget_s, min_rounds, max_rounds)
        benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=0)
        copy_bytes_per_s = bandwidth.copy_bandwidth(floor_bytes, workload.threads or 0)
        # After the timed rounds: accuracy on the workload's inputs (the module docstring of accuracy.py).
        errors = accuracy.errors(workload, candidate, inputs, _reference(workload))
    benchmark.extra_info.update(
        kind=figures.THROUGHPUT,
        workload=workload.name,
        implementation=candidate.name,
        device=candidate.device,
        op=workload.op,
        direction=workload.direction,
        rois=workload.num_rois,
        channels=workload.channels,
        output_size=workload.output_size,
        threads=workload.threads,
        channels_last=workload.channels_last,
        dtype=workload.dtype,
        compared_with=workload.compared_with,
        target_speedup=workload.target_speedup,
        sweep=workload.sweep,
        value=workload.value,
        bytes=nbytes,
        floor_bytes=floor_bytes,
        copy_bytes_per_s=copy_bytes_per_s,
        estimated_call_s=seconds_per_call,
        traffic=_our_traffic(workload) if candidate.name == figures.ours_name() else None,
        **errors,
    )
    roialign_record(benchmark)
