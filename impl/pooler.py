"""Multi-level RoIAlign pooler for FPN box heads (maskrcnn_benchmark's ``Pooler``).

Each box is pooled from one pyramid level, chosen by :mod:`impl.levels`, with
that level's ``spatial_scale``. Scales are powers of two, each half the
previous (``(0.25, 0.125, 0.0625, 0.03125)`` for P2-P5), either given
explicitly or inferred from feature-map and image sizes by torchvision's rule
(:func:`infer_scales`). ``k_min = -log2(scales[0])``, ``k_max = -log2(scales[-1])``.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from roialign_suite.impl.inputs import BoxesArg, check_features, check_sampling_ratio, output_size_pair, rois_from_boxes
from roialign_suite.impl.levels import check_canonical, get_dialect, levels_for_boxes
from roialign_suite.impl.roi_align import multilevel_roi_align, roi_align


def pyramid_levels(scales: Sequence[float]) -> Tuple[int, int]:
    """``(k_min, k_max)`` of a pyramid's scales; ``ValueError`` unless each is a power of two half the previous."""
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty sequence of numbers, got {scales!r}")
    exponents = []
    for i, scale in enumerate(scales):
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"scales[{i}] must be a number, got {scale!r}")
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scales[{i}] must be finite and positive, got {scale!r}")
        mantissa, exponent = math.frexp(scale)
        if mantissa != 0.5:
            raise ValueError(f"scales[{i}] = {scale!r} is not a power of two")
        exponents.append(exponent - 1)
    for i in range(1, len(exponents)):
        if exponents[i] != exponents[i - 1] - 1:
            raise ValueError(
                f"scales must halve from each level to the next, got scales[{i - 1}] = {scales[i - 1]!r} "
                f"and scales[{i}] = {scales[i]!r}"
            )
    return -exponents[0], -exponents[-1]


def check_pyramid_shapes(features: Sequence[Tensor]) -> None:
    """Each level's ``H`` and ``W`` must be half the previous level's, rounded either way."""
    for i in range(1, len(features)):
        previous, current = features[i - 1].shape[-2:], features[i].shape[-2:]
        if any(abs(2 * now - before) > 1 for now, before in zip(current, previous)):
            raise ValueError(
                f"features do not form a pyramid: features[{i}] is {tuple(current)} "
                f"after features[{i - 1}] at {tuple(previous)} (each level must be half the previous)"
            )


def check_pyramid(features: Sequence[Tensor], names: Sequence[str] = (), cpu_only: bool = True) -> None:
    """A pyramid's maps: each ``[N, C, H_l, W_l]`` (:func:`impl.inputs.check_features`), all of one N, C,
    dtype and device, each level half the previous (:func:`check_pyramid_shapes`).

    Errors name level ``i`` as ``features[names[i]]`` when ``names`` are given, else ``features[i]``.
    """
    label = [f"features[{name!r}]" for name in names] or [f"features[{i}]" for i in range(len(features))]
    first = features[0]
    for i, feature in enumerate(features):
        check_features(feature, label[i], cpu_only=cpu_only)
        if feature.shape[:2] != first.shape[:2] or feature.dtype != first.dtype or feature.device != first.device:
            raise ValueError(
                f"{label[i]} ({tuple(feature.shape)}, {feature.dtype}, {feature.device}) does not match "
                f"{label[0]} ({tuple(first.shape)}, {first.dtype}, {first.device}) in N, C, dtype and device"
            )
    check_pyramid_shapes(features)


def power_of_two_exponent(numerator: int, denominator: int) -> int:
    """``round(log2(numerator / denominator))`` of two positive ints, from integer comparisons only.

    ``e`` is the exponent with ``2 ** (e - 1/2) <= n / d < 2 ** (e + 1/2)``, i.e.
    ``2 ** (2e - 1) d**2 <= n**2 < 2 ** (2e + 1) d**2``; no ratio of ints is a tie
    (``sqrt(2)`` is irrational), so rounding needs no tie rule. This equals
    torchvision's float32 ``log2(...).round()`` for every pair of sides up to 3000 px
    (checked on all 9e6 pairs; float32 could only differ within about 1e-7 of a tie).
    Comparisons of ints keep it valid for TorchScript and for ``torch.compile`` with
    symbolic sizes, where each comparison is a guard on sizes, never on data.
    """
    n2 = numerator * numerator
    d2 = denominator * denominator
    exponent = 0
    while 2 * n2 < d2:  # n / d < 2 ** (exponent - 1/2): go down a power
        n2 = 4 * n2
        exponent -= 1
    while n2 >= 2 * d2:  # n / d >= 2 ** (exponent + 1/2): go up a power
        d2 = 4 * d2
        exponent += 1
    return exponent


def largest_image_size(image_sizes: List[Tuple[int, int]]) -> Tuple[int, int]:
    """The largest height and the largest width of the images' ``(h, w)``; ``ValueError`` unless
    there is one and every side is positive (TorchScript-compatible)."""
    if len(image_sizes) == 0:
        raise ValueError("image_sizes must hold at least one (h, w)")
    image_h, image_w = 0, 0
    for i, size in enumerate(image_sizes):
        h, w = size
        if h <= 0 or w <= 0:
            raise ValueError(f"image_sizes[{i}] must be a positive (h, w), got ({h}, {w})")
        image_h, image_w = max(image_h, h), max(image_w, w)
    return image_h, image_w


def scale_exponents(map_sizes: List[List[int]], image_h: int, image_w: int) -> List[int]:
    """Each level's scale as a power of two, ``scale_l = 2 ** exponents[l]``: torchvision's rule on
    the map's ``(H, W)`` and the image's largest ``(image_h, image_w)`` (TorchScript-compatible).

    ``ValueError`` where the height and the width give different scales, or where
    the scales do not halve from level to level (torchvision would silently pool
    from the wrong level or at a scale wrong for one axis).
    """
    if len(map_sizes) == 0:
        raise ValueError("feature_sizes must hold at least one level")
    exponents: List[int] = []
    for i, size in enumerate(map_sizes):
        feature_h, feature_w = size[-2], size[-1]
        from_h = power_of_two_exponent(feature_h, image_h)
        from_w = power_of_two_exponent(feature_w, image_w)
        if from_h != from_w:
            raise ValueError(
                f"level {i}: feature map {feature_h}x{feature_w} on a {image_h}x{image_w} image gives "
                f"scale 2**{from_h} from the height but 2**{from_w} from the width"
            )
        if i > 0 and from_h != exponents[i - 1] - 1:
            raise ValueError(
                f"scales must halve from each level to the next, got 2**{exponents[i - 1]} at level {i - 1} "
                f"and 2**{from_h} at level {i}"
            )
        exponents.append(from_h)
    return exponents


def infer_scales(feature_sizes: Sequence[Sequence[int]], image_sizes: Sequence[Sequence[int]]) -> Tuple[float, ...]:
    """torchvision's scale inference: ``2 ** round(log2(feature / image))`` per level.

    ``feature_sizes`` are each level's ``(H, W)`` (or shapes ending in them);
    ``image_sizes`` the ``(h, w)`` of every image, of which the largest ``h``
    and ``w`` count. torchvision looks at the height only; here the width must
    give the same scale and the scales must form a pyramid, or ``ValueError``
    (:func:`scale_exponents`, exact integer arithmetic: :func:`power_of_two_exponent`).
    """
    for i, size in enumerate(image_sizes):
        if len(size) != 2:
            raise ValueError(f"image_sizes[{i}] must be a positive (h, w), got {tuple(size)!r}")
    image_h, image_w = largest_image_size([(int(h), int(w)) for h, w in image_sizes])
    exponents = scale_exponents([[int(side) for side in tuple(size)[-2:]] for size in feature_sizes], image_h, image_w)
    return tuple(2.0**e for e in exponents)


class Pooler(nn.Module):
    """Pools each box from its FPN level: ``pooler(features, boxes) -> [K, C, h, w]``.

    Args:
        output_size: ``int`` or ``(h, w)``.
        scales: one ``spatial_scale`` per level, finest first, powers of two
            each half the previous.
        sampling_ratio: as :func:`impl.roi_align` (``<= 0`` adaptive).
        aligned: pixel convention, as :func:`impl.roi_align`.
        dialect: level formula (:mod:`impl.levels`), default maskrcnn_benchmark's.
        canonical_scale, canonical_level: ``s0`` and ``k0`` of the formula.

    Call with ``features``, a list of ``[N, C, H_l, W_l]`` maps (one per
    scale, same N, C, dtype), and ``boxes`` in image pixels, a list of
    per-image ``Tensor[L, 4]`` or a ``Tensor[K, 5]``. Rows come out in input
    order; the result is differentiable with respect to every level.

    Subclasses swap the parts by overriding the ``roi_align`` and
    ``assign_levels`` staticmethods (``reference.pooler`` does).
    """

    roi_align = staticmethod(roi_align)
    assign_levels = staticmethod(levels_for_boxes)

    def __init__(
        self,
        output_size,
        scales: Sequence[float],
        sampling_ratio: int,
        aligned: bool = False,
        dialect="maskrcnn_benchmark",
        canonical_scale: float = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        self.output_size = output_size_pair(output_size)
        self.k_min, self.k_max = pyramid_levels(scales)
        self.scales = tuple(float(s) for s in scales)
        self.sampling_ratio = check_sampling_ratio(sampling_ratio)
        self.aligned = bool(aligned)
        self.dialect = get_dialect(dialect)
        check_canonical(canonical_scale, canonical_level, self.dialect.eps)
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def levels(self, rois: Tensor) -> Tensor:
        """0-based level of each ``(batch_index, x1, y1, x2, y2)`` row (halves levelled in float32: ``impl.levels``)."""
        return self.assign_levels(
            rois[:, 1:], self.k_min, self.k_max, self.canonical_scale, self.canonical_level, None, self.dialect
        )

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        features = self._checked_features(features)
        rois = rois_from_boxes(boxes, features[0])
        levels = self.levels(rois)
        if self.roi_align is roi_align:
            # Our kernel pools every level in one pass.
            return multilevel_roi_align(
                features, rois, levels, self.scales, self.output_size, self.sampling_ratio, self.aligned
            )
        result = features[0].new_zeros((rois.shape[0], features[0].shape[1]) + self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            rows = torch.nonzero(levels == level).squeeze(1)
            result[rows] = self.roi_align(
                feature, rois[rows], self.output_size, scale, self.sampling_ratio, self.aligned
            )
        return result

    def _checked_features(self, features: Sequence[Tensor]) -> List[Tensor]:
        if isinstance(features, Tensor) or not isinstance(features, (list, tuple)):
            raise TypeError(f"features must be a list of [N, C, H, W] tensors, got {type(features).__name__}")
        if len(features) != len(self.scales):
            raise ValueError(f"features has {len(features)} levels but the pooler has {len(self.scales)} scales")
        check_pyramid(features, cpu_only=self.roi_align is roi_align)
        return list(features)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, scales={self.scales}, sampling_ratio={self.sampling_ratio}, "
            f"aligned={self.aligned}, dialect={self.dialect.name!r}, canonical_scale={self.canonical_scale}, "
            f"canonical_level={self.canonical_level}"
        )


def fpn_box_head_pooler(aligned: bool = False, dialect="maskrcnn_benchmark") -> Pooler:
    """maskrcnn_benchmark's FPN box-head pooler: 7x7, P2-P5 scales, sampling ratio 2."""
    return Pooler(7, (0.25, 0.125, 0.0625, 0.03125), 2, aligned=aligned, dialect=dialect)


def c4_box_head_pooler(aligned: bool = False) -> Pooler:
    """maskrcnn_benchmark's C4 box-head pooler: one level at 1/16, 14x14, adaptive sampling."""
    return Pooler(14, (1.0 / 16,), 0, aligned=aligned)
