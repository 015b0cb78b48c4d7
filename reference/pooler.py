"""Oracles for the multi-level pooler.

- :class:`Pooler`: ``impl.pooler.Pooler``'s logic with the float64 parts,
  ``reference.roi_align`` and the per-box level formula of ``reference.levels``.
- :class:`TorchvisionPooler`: ``torchvision.ops.MultiScaleRoIAlign`` behind the
  same ``(features, boxes)`` call (torchvision dialect, ``aligned=False``).
- :func:`magnitudes`: the sums of absolute terms that bound how far two poolers
  (or box heads built on them) differing only in summation order may differ.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from roialign_suite.impl.inputs import BoxesArg, output_size_pair, rois_from_boxes
from roialign_suite.impl.pooler import Pooler as ImplPooler
from roialign_suite.impl.pooler import pyramid_levels
from roialign_suite.reference.levels import levels_for_boxes
from roialign_suite.reference.roi_align import roi_align


class Pooler(ImplPooler):
    """The reference pooler: same constructor and call as ``impl.pooler.Pooler``.

    Levels come from the float64 per-box formula, so for float32 boxes within
    ``reference.levels.threshold_band`` of a threshold it may pick the other level.
    """

    roi_align = staticmethod(roi_align)
    assign_levels = staticmethod(levels_for_boxes)


def torchvision_inferred_scales(feature_sizes: Sequence[Sequence[int]], image_sizes: Sequence[Tuple[int, int]]) -> List[float]:
    """The scales ``MultiScaleRoIAlign`` infers for these feature-map and image sizes (torchvision's own code)."""
    features = [torch.empty((1, 1) + tuple(int(s) for s in tuple(size)[-2:])) for size in feature_sizes]
    scales, _ = torchvision.ops.poolers._setup_scales(features, [tuple(s) for s in image_sizes], 224, 4)
    return scales


class TorchvisionPooler(nn.Module):
    """``torchvision.ops.MultiScaleRoIAlign`` called as ``pooler(features, boxes)``.

    torchvision infers the scales from the image size; give ``image_size``
    ``(h, w)``, or leave it ``None`` and give ``scales`` (the image is then
    ``features[0]``'s size divided by ``scales[0]``). Scales torchvision infers
    that differ from ``scales`` raise ``ValueError``, so a comparison never
    runs on silently different pyramids. ``Tensor[K, 5]`` boxes are split per
    image and the rows put back in input order.
    """

    def __init__(
        self,
        output_size,
        sampling_ratio: int,
        scales: Optional[Sequence[float]] = None,
        image_size: Optional[Tuple[int, int]] = None,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if scales is None and image_size is None:
            raise ValueError("TorchvisionPooler needs scales or image_size")
        if scales is not None:
            pyramid_levels(scales)
        self.scales = None if scales is None else [float(s) for s in scales]
        self.image_size = image_size
        self.output_size = output_size_pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        names = [str(i) for i in range(len(features))]
        module = torchvision.ops.MultiScaleRoIAlign(
            names,
            self.output_size,
            self.sampling_ratio,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
        )
        rois = rois_from_boxes(boxes, features[0])
        per_image, order = _split_by_image(rois, features[0].shape[0])
        image_size = self._image_size(features[0])
        result = module(OrderedDict(zip(names, features)), per_image, [image_size] * features[0].shape[0])
        if self.scales is not None and module.scales != self.scales:
            raise ValueError(f"torchvision inferred scales {module.scales}, not {self.scales}")
        return result[torch.argsort(order)]

    def _image_size(self, first: Tensor) -> Tuple[int, int]:
        if self.image_size is not None:
            return tuple(self.image_size)
        return (round(first.shape[2] / self.scales[0]), round(first.shape[3] / self.scales[0]))


def _split_by_image(rois: Tensor, num_images: int) -> Tuple[List[Tensor], Tensor]:
    """``Tensor[K, 5]`` -> per-image ``Tensor[L, 4]`` and the input row of each concatenated row."""
    index = rois[:, 0].long()
    rows = [torch.nonzero(index == i).squeeze(1) for i in range(num_images)]
    return [rois[r, 1:] for r in rows], torch.cat(rows) if rows else index.new_zeros(0)


def magnitudes(module: nn.Module, features: Sequence[Tensor], boxes, grad_output: Tensor):
    """The sums of absolute terms behind ``module(features, boxes)`` and its gradients.

    ``module`` is built from RoIAlign (a linear map with non-negative weights),
    linear layers and ReLU. A copy with ``|parameters|`` run on ``|features|``
    and back-propagated from ``|grad_output|`` computes each output and
    gradient entry as the sum of the absolute values of its exact terms
    (ReLU is the identity on non-negative values). Two implementations that
    differ only in summation order and share the ReLU pattern then differ by
    at most ``2 * gamma(n) * magnitude`` (``properties.tolerances.gamma``),
    ``n`` the longest chain of accumulations. Returns ``(output, feature_grads, {param name: grad})``.
    """
    absolute = copy.deepcopy(module)
    with torch.no_grad():
        for p in absolute.parameters():
            p.abs_()
    inputs = [f.detach().abs().requires_grad_() for f in features]
    out = absolute(inputs, boxes)
    out.backward(grad_output.abs())
    return out.detach(), [x.grad for x in inputs], {n: p.grad for n, p in absolute.named_parameters()}
