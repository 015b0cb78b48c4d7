"""``impl.MultiScaleRoIAlign``: a drop-in for ``torchvision.ops.MultiScaleRoIAlign`` on our kernel.

A detection model swaps its poolers by assignment, e.g. in torchvision's Mask R-CNN::

    model.roi_heads.box_roi_pool = impl.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    model.roi_heads.mask_roi_pool = impl.MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Dict, List, Tuple

from torch import Tensor, nn

from roialign_suite.impl.inputs import check_sampling_ratio, output_size_pair, rois_from_boxes
from roialign_suite.impl.levels import DIALECTS, check_canonical, levels_for_boxes
from roialign_suite.impl.pooler import check_pyramid, infer_scales, pyramid_levels
from roialign_suite.impl.roi_align import multilevel_roi_align

TORCHVISION = DIALECTS["torchvision"]


class MultiScaleRoIAlign(nn.Module):
    """``torchvision.ops.MultiScaleRoIAlign``'s constructor and call, pooled in one pass of our kernel.

    ``module(x, boxes, image_shapes) -> Tensor[K, C, h, w]``:

    - ``x``: feature maps by name, each ``[N, C, H_l, W_l]`` (CPU, float16,
      bfloat16, float32 or float64, one N, C and dtype). The levels pooled are the entries of
      ``x`` named in ``featmap_names``, in ``x``'s order (as torchvision),
      finest first; each must be half the previous.
    - ``boxes``: one ``Tensor[L_i, 4]`` per image, ``(x1, y1, x2, y2)`` in
      image pixels (``x``'s dtype), ``N`` of them.
    - ``image_shapes``: each image's ``(h, w)`` before the backbone, ``N`` of them.

    Row ``k`` of the result is the ``k``-th box of ``torch.cat(boxes)`` (torchvision's
    order), pooled with ``aligned=False`` from the level torchvision's
    ``LevelMapper`` picks (:mod:`impl.levels`, ``"torchvision"`` dialect, eps
    1e-6, ``canonical_scale``, ``canonical_level``). Differentiable with respect
    to every map.

    Scales. Each level's ``spatial_scale`` is inferred on every call from the
    map and the largest image height and width, ``2 ** round(log2(map / image))``
    (:func:`impl.pooler.infer_scales`). torchvision infers from the height alone,
    once, on its first call; here the width must give the same scale and the
    scales must halve from level to level, else ``ValueError``. With torchvision's
    ``GeneralizedRCNNTransform`` (batch padded to a multiple of 32) the two
    agree, and equal ``1 / stride``, whenever the batch's largest height and
    largest width are each at least 68 px (``tests/test_maskrcnn.py`` checks every
    side up to 1400 px); with the default ``min_size=800, max_size=1333`` that is
    any aspect ratio up to 19:1. On smaller sides padding can round the ratio to the
    wrong power of two: where height and width then disagree torchvision pools
    at a scale wrong for one axis and we raise; where they agree we infer what
    torchvision does.

    Boxes inverted along one axis (negative area) are pooled from the lowest
    level (:mod:`impl.levels`); torchvision's level for them is undefined
    (NaN cast to int64). Bad arguments raise ``TypeError`` / ``ValueError``
    naming them. The forward checks metadata only and leaves the data
    (finite boxes) to the ``torch.ops.roialign_suite`` operators it calls, so
    ``torch.compile(fullgraph=True)`` captures it whole.
    """

    def __init__(
        self,
        featmap_names: List[str],
        output_size,
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if isinstance(featmap_names, str) or not isinstance(featmap_names, Sequence) or not featmap_names:
            raise TypeError(f"featmap_names must be a non-empty list of str, got {featmap_names!r}")
        if not all(isinstance(name, str) for name in featmap_names):
            raise TypeError(f"featmap_names must hold str, got {featmap_names!r}")
        check_canonical(canonical_scale, canonical_level, TORCHVISION.eps)
        self.featmap_names = list(featmap_names)
        self.output_size = output_size_pair(output_size)
        self.sampling_ratio = check_sampling_ratio(sampling_ratio)
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        features = self._pyramid(x)
        num_images = features[0].shape[0]
        for what, value in (("boxes", boxes), ("image_shapes", image_shapes)):
            if isinstance(value, (str, Tensor)) or not isinstance(value, Sequence):
                raise TypeError(f"{what} must be a list with one entry per image, got {type(value).__name__}")
            if len(value) != num_images:
                raise ValueError(f"{what} has {len(value)} entries for {num_images} images")
        rois = rois_from_boxes(list(boxes), features[0])
        scales = infer_scales([f.shape for f in features], image_shapes)
        k_min, k_max = pyramid_levels(scales)
        levels = levels_for_boxes(
            rois[:, 1:], k_min, k_max, self.canonical_scale, self.canonical_level, TORCHVISION.eps, TORCHVISION,
            [b.shape[0] for b in boxes],
        )
        return multilevel_roi_align(features, rois, levels, scales, self.output_size, self.sampling_ratio, False)

    def _pyramid(self, x: Dict[str, Tensor]) -> List[Tensor]:
        """The maps named in ``featmap_names``, in ``x``'s order, checked."""
        if not isinstance(x, Mapping):
            raise TypeError(f"x must be a dict of feature maps, got {type(x).__name__}")
        missing = [name for name in self.featmap_names if name not in x]
        if missing:
            raise ValueError(f"x has no feature map named {missing} (it has {list(x)})")
        names = [name for name in x if name in self.featmap_names]
        features = [x[name] for name in names]
        check_pyramid(features, names)
        return features

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )

