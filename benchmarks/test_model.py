"""torchvision's Mask R-CNN, train step and eval forward, with torchvision's and our MultiScaleRoIAlign.

Both poolers time the same model (built once per workload, weights fixed)
on the same batch, in one pytest-benchmark group per workload; the speedup
is that of the whole step. :class:`benchmarks.maskrcnn.PoolerClock` measures,
over the timed rounds, the time spent inside the box and mask poolers
(forward, and backward in a train step), reported as ``pool_s`` per step
and ``pool_share`` of the step.
"""
from __future__ import annotations

import functools
import math

import torch

from roialign_suite.benchmarks import figures, maskrcnn
from roialign_suite.benchmarks.runners import ModelStep, rounds_for, seconds_of


@functools.lru_cache(maxsize=1)
def _model_and_batch(workload):
    # Cases of one workload run back to back: keep only the current model.
    model = maskrcnn.maskrcnn(torch.float32, **workload.model_kwargs())
    images, targets = maskrcnn.synthetic_batch(workload.image_sizes(), workload.objects, workload.num_classes, torch.float32)
    if not workload.train:
        _calibrate_batch_norm(model, images, targets)
    return model, images, targets


def _calibrate_batch_norm(model, images, targets) -> None:
    """Set every BatchNorm's running statistics to this batch's, as a trained model has them for its data."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(images, targets)
    for norm in norms:
        norm.momentum = 0.1


def test_model(benchmark, model_case, roialign_timing_plan, roialign_record, roialign_jit_warm):
    workload, implementation = model_case
    model, images, targets = _model_and_batch(workload)
    maskrcnn.use_poolers(model, implementation)
    benchmark.group = workload.name
    budget_s, min_rounds, max_rounds = roialign_timing_plan
    step = ModelStep(model, images, targets, workload.train)
    clock = maskrcnn.PoolerClock()
    handles = clock.attach({"box": model.roi_heads.box_roi_pool, "mask": model.roi_heads.mask_roi_pool})
    try:
        # One untimed call warms up and sizes the rounds (not under --roialign-quick, whose budget is 0).
        estimate_s = seconds_of(step) if budget_s > 0 else math.inf
        rounds = rounds_for(estimate_s, budget_s, min_rounds, max_rounds)
        clock.reset()
        step.reset()
        benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    finally:
        for handle in handles:
            handle.remove()
    benchmark.extra_info.update(
        kind=figures.MODEL,
        workload=workload.name,
        implementation=implementation,
        direction=workload.direction,
        images=workload.images,
        image_size=list(workload.image_size),
        pool_s={f"{name} {direction}": s / rounds for (name, direction), s in clock.seconds.items()},
        pool_share=clock.total() / step.seconds,
        rois={name: n / rounds for name, n in clock.rois.items()},
    )
    roialign_record(benchmark)
