"""Oracles for the multi-level pooler.

- :class:`Pooler`: the definition of the multi-level pooler, a plain loop
  over boxes: each box's level by ``reference.levels.level_for_box``, then
  ``reference.roi_align`` on that level's map for that one box.
- :func:`magnitudes`: the sums of absolute terms that bound how far two poolers
  (or box heads built on them) differing only in summation order may differ.
"""
from __future__ import annotations

import copy
import math
from typing import List, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg, require_real
from roialign_suite.reference.levels import check_canonical, dialect_name, level_for_box
from roialign_suite.reference.roi_align import check_geometry, roi_align


def pyramid_levels(scales: Sequence[float]) -> Tuple[int, int]:
    """``(k_min, k_max)`` for ``scales = (2**-k_min, 2**-(k_min + 1), ..., 2**-k_max)``; ``ValueError`` otherwise.

    Level ``k`` of an FPN has stride ``2**k``, i.e. ``spatial_scale = 2**-k``:
    the scales must be powers of two, finest first, each half the previous.
    """
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty sequence of powers of two, got {scales!r}")
    levels = []
    for i, scale in enumerate(scales):
        require_real(f"scales[{i}]", scale, positive=True)
        exponent = round(math.log2(scale))
        # 2.0 ** exponent is the power of two nearest scale (it would overflow past 2**1023,
        # where no finite scale but 2**1023 itself is a power of two).
        if exponent > 1023 or 2.0**exponent != scale:
            raise ValueError(f"scales[{i}] = {scale!r} is not a power of two")
        k = -exponent  # scale 2**-k is level k
        if levels and k != levels[-1] + 1:
            raise ValueError(
                f"scales must halve from each level to the next: scales[{i - 1}] = {scales[i - 1]!r}, "
                f"scales[{i}] = {scale!r}"
            )
        levels.append(k)
    return levels[0], levels[-1]


class Pooler(nn.Module):
    """The reference pooler: same constructor and call as ``impl.pooler.Pooler``.

    ``Pooler(output_size, scales, sampling_ratio, aligned=False,
    dialect="maskrcnn_benchmark", canonical_scale=224, canonical_level=4)``;
    ``pooler(features, boxes) -> [K, C, h, w]`` with ``features`` one
    ``[N, C, H_l, W_l]`` map per scale (finest first; same N, C, dtype and
    device; each level's H and W half the previous, rounded either way) and
    ``boxes`` in image pixels (``Tensor[K, 5]`` or a list of per-image
    ``Tensor[L, 4]``). Row ``k`` of the result is box ``k`` in the caller's
    order, pooled by ``reference.roi_align`` from the one level
    ``reference.levels.level_for_box`` gives it. Differentiable with respect
    to every level (an unused level gets a zero gradient).

    Levels come from the float64 formula on the boxes' exact coordinates, so
    a float32 box within ``reference.levels.threshold_band`` of a threshold
    may go to the level next to the one ``impl`` (computing in float32) picks.
    """

    def __init__(self, output_size, scales: Sequence[float], sampling_ratio: int, aligned: bool = False,
                 dialect="maskrcnn_benchmark", canonical_scale: float = 224, canonical_level: int = 4):
        super().__init__()
        check_canonical(canonical_scale, canonical_level)
        self.dialect = dialect_name(dialect)
        self.k_min, self.k_max = pyramid_levels(scales)
        # Level k_min + i pools with scales[i] = 2**-(k_min + i).
        self.scales = tuple(map(float, scales))
        self.output_size = inputs.output_size_pair(output_size)
        self.sampling_ratio = inputs.check_sampling_ratio(sampling_ratio)
        self.aligned = inputs.check_aligned(aligned)
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

    def level_of(self, box: Sequence[float]) -> int:
        """0-based level of one ``(x1, y1, x2, y2)`` box (the dialect's default eps)."""
        return level_for_box(
            box, self.k_min, self.k_max, self.canonical_scale, self.canonical_level, None, self.dialect
        )

    def levels(self, rois: Tensor) -> Tensor:
        """0-based level of each ``(batch_index, x1, y1, x2, y2)`` row -> int64 ``Tensor[K]``."""
        rows = rois.detach().cpu().double().tolist()
        return torch.tensor([self.level_of(row[1:]) for row in rows], dtype=torch.int64, device=rois.device)

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        features = self._checked_features(features)
        first = features[0]
        rois = inputs.rois_from_boxes(boxes, first)  # float64, the caller's exact values and order
        pooled = []
        for k, roi in enumerate(rois.tolist()):
            level = self.level_of(roi[1:])
            scale = self.scales[level]
            # Checked here too (roi_align checks again) so that an error names the caller's row k.
            check_geometry(rois[k : k + 1], self.output_size, scale, self.sampling_ratio, self.aligned, first_row=k)
            # The box's own image alone, and the box as that one-image batch's list form: the
            # batch index never goes through the features' dtype. Coordinates back in that
            # dtype are exact (they came from it).
            image = int(roi[0])
            box = rois[k : k + 1, 1:].to(dtype=first.dtype, device=first.device)
            feature = features[level][image : image + 1]
            pooled.append(roi_align(feature, [box], self.output_size, scale, self.sampling_ratio, self.aligned))
        # No boxes pooled from every level too, each [0, C, h, w]: nothing in the
        # output, but every level joins the graph and gets a (zero) gradient.
        no_boxes = first.new_zeros((0, 5))
        for feature, scale in zip(features, self.scales):
            pooled.append(roi_align(feature, no_boxes, self.output_size, scale, self.sampling_ratio, self.aligned))
        return torch.cat(pooled)

    def _checked_features(self, features) -> List[Tensor]:
        """``features`` as a list, after checking it is one ``[N, C, H, W]`` map per scale forming a pyramid."""
        if not isinstance(features, (list, tuple)):
            raise TypeError(f"features must be a list with one [N, C, H, W] map per scale, got {type(features).__name__}")
        if len(features) != len(self.scales):
            raise ValueError(f"features must hold one map per scale: got {len(features)} maps for {len(self.scales)} scales")
        for i, feature in enumerate(features):
            inputs.check_features(feature, name=f"features[{i}]")
        first = features[0]
        for i, feature in enumerate(features[1:], start=1):
            same = (feature.shape[0], feature.shape[1], feature.dtype, feature.device)
            if same != (first.shape[0], first.shape[1], first.dtype, first.device):
                raise ValueError(
                    f"features[{i}] (shape {list(feature.shape)}, {feature.dtype}, {feature.device}) does not match "
                    f"features[0] (shape {list(first.shape)}, {first.dtype}, {first.device}) in N, C, dtype and device"
                )
            # A pyramid: each side is the previous one halved, rounded down or up.
            for before, now in zip(features[i - 1].shape[2:], feature.shape[2:]):
                if now not in (before // 2, (before + 1) // 2):
                    raise ValueError(
                        f"features[{i}] has H, W = {list(feature.shape[2:])} after features[{i - 1}]'s "
                        f"{list(features[i - 1].shape[2:])}: each level's sides must be the previous level's "
                        "halved, rounded down or up (not a pyramid)"
                    )
        return list(features)

    def extra_repr(self) -> str:
        names = ("output_size", "scales", "sampling_ratio", "aligned", "dialect", "canonical_scale", "canonical_level")
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)


def torchvision_inferred_scales(feature_sizes: Sequence[Sequence[int]], image_sizes: Sequence[Tuple[int, int]]) -> List[float]:
    """The scales ``MultiScaleRoIAlign`` infers for these feature-map and image sizes (torchvision's own code)."""
    features = [torch.empty((1, 1) + tuple(int(s) for s in tuple(size)[-2:])) for size in feature_sizes]
    scales, _ = torchvision.ops.poolers._setup_scales(features, [tuple(s) for s in image_sizes], 224, 4)
    return scales


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
