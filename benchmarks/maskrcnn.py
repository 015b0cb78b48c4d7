"""torchvision's Mask R-CNN with either RoI pooler, a synthetic batch for it, and a clock for its poolers.

Shared by the model workloads (``benchmarks/test_model.py``) and by
``tests/test_maskrcnn.py``. The model is ``maskrcnn_resnet50_fpn`` with
random weights (no download); its two poolers are the ``multiscale_roi_align`` of
an implementation's record (torchvision's ``MultiScaleRoIAlign``, or ours), built with
the arguments torchvision's Mask R-CNN uses.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from roialign_suite.implementations import registry
from roialign_suite.benchmarks.workloads import realistic_boxes

FEATMAP_NAMES = ["0", "1", "2", "3"]  # P2..P5; "pool" (P6) feeds the RPN only
POOLER_ARGS = {"box": (7, 2), "mask": (14, 2)}  # (output_size, sampling_ratio) of roi_heads.{box,mask}_roi_pool


def pooler(implementation: str, kind: str, canonical_scale: int = 224) -> nn.Module:
    """The ``kind`` (``"box"`` or ``"mask"``) pooler of Mask R-CNN from ``implementation`` (a built-in's name:
    its record's ``multiscale_roi_align``)."""
    classes = {i.name: i.multiscale_roi_align for i in registry.builtin() if i.multiscale_roi_align is not None}
    if implementation not in classes:
        raise ValueError(f"no MultiScaleRoIAlign for {implementation!r}; known: {sorted(classes)}")
    output_size, sampling_ratio = POOLER_ARGS[kind]
    return classes[implementation](FEATMAP_NAMES, output_size, sampling_ratio, canonical_scale=canonical_scale)


def use_poolers(model: nn.Module, implementation: str, canonical_scale: int = 224) -> nn.Module:
    """Set ``model.roi_heads``' box and mask poolers to ``implementation``'s; returns ``model``."""
    model.roi_heads.box_roi_pool = pooler(implementation, "box", canonical_scale)
    model.roi_heads.mask_roi_pool = pooler(implementation, "mask", canonical_scale)
    return model


def maskrcnn(dtype: torch.dtype = torch.float32, seed: int = 0, **kwargs) -> nn.Module:
    """``maskrcnn_resnet50_fpn`` with weights drawn from ``seed``; ``kwargs`` go to ``MaskRCNN``."""
    torch.manual_seed(seed)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    return model.to(dtype)


def synthetic_batch(
    image_sizes: Sequence[Tuple[int, int]], objects: int, num_classes: int, dtype: torch.dtype, seed: int = 0
) -> Tuple[List[Tensor], List[Dict[str, Tensor]]]:
    """Images (uniform in [0, 1), ``[3, h, w]``) and training targets, deterministic in ``seed``.

    Each image has ``objects`` boxes drawn by :func:`workloads.realistic_boxes`
    (sizes scaled to the image height), labels in ``[1, num_classes)`` and, as
    its mask, the box filled.
    """
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for h, w in image_sizes:
        images.append(torch.rand(3, h, w, generator=generator, dtype=dtype))
        boxes = realistic_boxes(objects, (h, w), generator).to(dtype)
        masks = torch.zeros(objects, h, w, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.round().long().tolist()):
            mask[y1:y2, x1:x2] = 1
        labels = torch.randint(1, num_classes, (objects,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})
    return images, targets


@dataclass
class PoolerClock:
    """Seconds spent in a model's RoI poolers, forward and backward, measured in place.

    :meth:`attach` hooks the pooler modules: the forward is timed from a
    pre-hook to a hook; the backward is the time spent in the autograd nodes
    the pooler's forward created (the nodes between its output and its input
    maps), timed by node pre-hooks and hooks. The CPU autograd engine runs
    nodes one at a time on the calling thread, so these times add up.
    """

    seconds: Dict[Tuple[str, str], float] = field(default_factory=dict)  # (pooler, "forward"/"backward") -> s
    rois: Dict[str, int] = field(default_factory=dict)  # pooler -> RoIs pooled
    _started: Dict[object, float] = field(default_factory=dict)

    def attach(self, poolers: Dict[str, nn.Module]) -> List:
        """Hook each ``name -> module``; returns the handles (``handle.remove()`` detaches)."""
        handles = []
        for name, module in poolers.items():
            handles.append(module.register_forward_pre_hook(self._forward_started))
            handles.append(module.register_forward_hook(self._forward_done(name)))
        return handles

    def reset(self) -> None:
        self.seconds.clear()
        self.rois.clear()

    def total(self, direction: str = "") -> float:
        """Seconds in all poolers (``direction`` ``"forward"``/``"backward"`` or both)."""
        return sum(s for (_, d), s in self.seconds.items() if d == direction or not direction)

    def _add(self, name: str, direction: str, seconds: float) -> None:
        self.seconds[(name, direction)] = self.seconds.get((name, direction), 0.0) + seconds

    def _forward_started(self, module, args) -> None:
        self._started[module] = time.perf_counter()

    def _forward_done(self, name: str):
        def hook(module, args, output) -> None:
            self._add(name, "forward", time.perf_counter() - self._started.pop(module))
            self.rois[name] = self.rois.get(name, 0) + sum(len(boxes) for boxes in args[1])
            if output.grad_fn is not None:
                maps = [f for f in args[0].values() if isinstance(f, Tensor)]
                for node in _nodes_between(output.grad_fn, maps):
                    node.register_prehook(self._backward_started(node))
                    node.register_hook(self._backward_done(name, node))

        return hook

    def _backward_started(self, node):
        def prehook(grad_outputs):
            self._started[node] = time.perf_counter()

        return prehook

    def _backward_done(self, name: str, node):
        def hook(grad_inputs, grad_outputs):
            self._add(name, "backward", time.perf_counter() - self._started.pop(node))

        return hook


def _nodes_between(output_node, inputs: Sequence[Tensor]) -> List:
    """The autograd nodes from ``output_node`` back to (not including) those of ``inputs``."""
    stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
    found, pending, seen = [], [output_node], set()
    while pending:
        node = pending.pop()
        if node is None or node in seen or node in stop or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        found.append(node)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return found
