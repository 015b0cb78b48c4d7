"""Accuracy beside speed: a timed kernel's error against the float64 reference on its workload's inputs.

Computed once per (workload, implementation), outside the timed region, on a
bounded slice of the workload's own inputs: the first :data:`ROIS_PER_IMAGE`
RoIs of each image, every channel, the whole feature maps. The reference
(:func:`reference`, once per workload) is ``reference.roi_align`` on the
features and RoIs converted exactly to float64; for a pooler workload, per
level, on the RoIs the timed pooler sends there (``runners.levels_of``: every
pooler row shares ``impl.Pooler``'s level assignment, so only the kernel
differs). A ``-fwdbwd`` workload also compares the gradient w.r.t. every
level's features, for one seeded output gradient, where the kernel is
differentiable. Errors (:func:`errors`): ``max_abs_error`` = max |output -
reference|, ``rel_error`` = that / max |reference| (likewise ``grad_*``).
The extractor workload (an MLP on the pooled features) is not compared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from roialign_suite import reference as oracle
from roialign_suite.benchmarks.runners import forward_of, levels_of, output_shape
from roialign_suite.benchmarks.workloads import Inputs, Workload
from roialign_suite.implementations.records import Implementation

ROIS_PER_IMAGE = 32  # RoIs compared per image (the first ones, in the workload's order)
COMPARED_OPS = ("roi_align", "pooler")
# The extra_info keys this module writes (None where not computed).
KEYS = ("error_rois", "max_abs_error", "rel_error", "grad_max_abs_error", "grad_rel_error")
NOTE = (
    f"Accuracy: each kernel's error against the float64 reference (reference.roi_align on the same inputs converted "
    f"exactly to float64; for the pooler, per level, on the RoIs impl.Pooler's level assignment sends there, which "
    f"every pooler row shares), computed once per case outside the timed region on the first {ROIS_PER_IMAGE} RoIs "
    "of each image, all channels. 'max abs error' = max |output - reference|; 'rel error' = max abs error / "
    "max |reference|; 'grad rel error' (-fwdbwd, differentiable kernels): the same for the gradient w.r.t. every "
    "level's features, for one seeded output gradient. '-': not computed (the extractor workload, or no backward)."
)


def compared_rows(rois: Tensor, per_image: int = ROIS_PER_IMAGE) -> Tensor:
    """Indices of the first ``per_image`` rows of each image (column 0 of ``rois``), in row order."""
    images = rois[:, 0].long()
    keep = torch.zeros(len(images), dtype=torch.bool)
    for image in images.unique():
        keep[(images == image).nonzero().flatten()[:per_image]] = True
    return keep.nonzero().flatten()


@dataclass
class Reference:
    """The float64 reference on a workload's compared slice."""

    rows: Tensor  # indices of the compared RoIs in ``Inputs.rois``
    rois: Tensor  # those RoIs, in the workload's dtype
    grad_output: Tensor  # seeded, in the workload's output dtype
    output: Tensor  # float64
    grad: Optional[List[Tensor]]  # float64, per level (backward workloads only)


def _pooled(workload: Workload, features: Sequence[Tensor], rois: Tensor, levels: Tensor) -> Tensor:
    """``reference.roi_align`` of each RoI from its level's map (float64 in, float64 out)."""
    out = features[0].new_zeros(output_shape(workload, rois.shape[0]))
    for level, (feature, scale) in enumerate(zip(features, workload.scales)):
        index = (levels == level).nonzero().flatten()
        if len(index):
            out[index] = oracle.roi_align(feature, rois[index], workload.output_size, scale,
                                          workload.sampling_ratio, workload.aligned)
    return out


def reference(workload: Workload, inputs: Inputs, seed: int = 0) -> Optional[Reference]:
    """The reference for ``workload`` (None for an op not compared: :data:`COMPARED_OPS`)."""
    if workload.op not in COMPARED_OPS:
        return None
    rows = compared_rows(inputs.rois)
    rois = inputs.rois[rows]
    levels = levels_of(workload, Inputs(inputs.features, inputs.boxes, rois))
    generator = torch.Generator().manual_seed(seed)
    grad_output = torch.randn(output_shape(workload, len(rows)), generator=generator).to(workload.torch_dtype)
    features = [f.detach().double().requires_grad_(workload.backward) for f in inputs.features]
    output = _pooled(workload, features, rois.double(), levels)
    grad = None
    if workload.backward:
        grad = list(torch.autograd.grad(output, features, grad_output.double(), allow_unused=True))
        grad = [torch.zeros_like(f) if g is None else g for f, g in zip(features, grad)]
    return Reference(rows, rois, grad_output, output.detach(), grad)


def _max_abs(tensors: Sequence[Tensor]) -> float:
    return max((float(t.abs().max()) for t in tensors if t.numel()), default=0.0)


def _relative(error: float, scale: float) -> float:
    return error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))


def errors(workload: Workload, candidate: Implementation, inputs: Inputs, ref: Optional[Reference]) -> Dict:
    """``candidate``'s errors on the compared slice (:data:`KEYS`; None where not computed)."""
    found = dict.fromkeys(KEYS)
    if ref is None:
        return found
    device = candidate.device
    backward = workload.backward and candidate.differentiable
    features = [f.detach().to(device).requires_grad_(backward) for f in inputs.features]
    with torch.set_grad_enabled(backward):
        output = forward_of(workload, candidate)(features, ref.rois.to(device))
    error = _max_abs([output.detach().cpu().double() - ref.output])
    found.update(error_rois=len(ref.rows), max_abs_error=error, rel_error=_relative(error, _max_abs([ref.output])))
    if backward and ref.grad is not None:
        grad = torch.autograd.grad(output, features, ref.grad_output.to(device), allow_unused=True)
        differences = [(torch.zeros_like(r) if g is None else g.cpu().double()) - r for g, r in zip(grad, ref.grad)]
        grad_error = _max_abs(differences)
        found.update(grad_max_abs_error=grad_error, grad_rel_error=_relative(grad_error, _max_abs(ref.grad)))
    return found
