"""``impl.MultiScaleRoIAlign``: a drop-in for ``torchvision.ops.MultiScaleRoIAlign`` on our kernel.

A detection model swaps its poolers by assignment, e.g. in torchvision's Mask R-CNN::

    model.roi_heads.box_roi_pool = impl.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    model.roi_heads.mask_roi_pool = impl.MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from roialign_suite.impl import ops as _ops  # noqa: F401 (registers torch.ops.roialign_suite)
from roialign_suite.impl.inputs import check_sampling_ratio, output_size_pair, rois_from_boxes
from roialign_suite.impl.levels import DIALECTS, check_canonical
from roialign_suite.impl.pooler import check_pyramid, largest_image_size, scale_exponents

TORCHVISION_DIALECT: str = DIALECTS["torchvision"].name
TORCHVISION_EPS: float = DIALECTS["torchvision"].eps


@torch.fx.wrap
def multiscale_roi_align(
    x: Dict[str, Tensor],
    boxes: List[Tensor],
    image_shapes: List[Tuple[int, int]],
    featmap_names: List[str],
    output_size: Tuple[int, int],
    sampling_ratio: int,
    canonical_scale: float,
    canonical_level: int,
    # Defaults, not globals: TorchScript reads a function's default values but not global floats.
    eps: float = TORCHVISION_EPS,
    dialect: str = TORCHVISION_DIALECT,
) -> Tensor:
    """:class:`MultiScaleRoIAlign`'s forward (arguments as there, the module's settings after them;
    ``eps`` and ``dialect`` of the level formula are torchvision's).

    One function for eager, TorchScript, ``torch.compile`` and ``torch.fx``:
    ``torch.fx.wrap`` keeps it one leaf call in ``symbolic_trace`` (as torchvision's
    ``_multiscale_roi_align``). The argument checks of kinds, names and shapes run
    in eager and compiled code (TorchScript's types stand in for the kinds); the
    scales come from the sizes alone in integer arithmetic (:func:`impl.pooler.scale_exponents`),
    so under ``torch.compile`` with dynamic shapes they are guards on sizes, never on
    data, and a batch whose height and width disagree raises ``ValueError`` in every mode.
    """
    if not torch.jit.is_scripting():
        _check_call(x, boxes, image_shapes, featmap_names)
    features = _named_maps(x, featmap_names)
    rois = rois_from_boxes(boxes, features[0])
    image_h, image_w = largest_image_size(image_shapes)
    exponents = scale_exponents([f.shape[-2:] for f in features], image_h, image_w)
    scales = [2.0**e for e in exponents]
    levels = torch.ops.roialign_suite.fpn_levels(
        rois[:, 1:].detach(), -exponents[0], -exponents[-1], canonical_scale, canonical_level, eps, dialect,
        [b.shape[0] for b in boxes],
    )
    return torch.ops.roialign_suite.multilevel_roi_align(
        features, rois, levels, scales, output_size[0], output_size[1], sampling_ratio, False
    )


def _named_maps(x: Dict[str, Tensor], featmap_names: List[str]) -> List[Tensor]:
    """The maps of ``x`` named in ``featmap_names``, in ``x``'s order (torchvision's ``_filter_input``)."""
    features: List[Tensor] = []
    for name, feature in x.items():
        if name in featmap_names:
            features.append(feature)
    return features


def _check_call(x, boxes, image_shapes, featmap_names: List[str]) -> None:
    """The forward's argument checks (metadata only): ``TypeError`` / ``ValueError`` naming the argument."""
    if not isinstance(x, Mapping):
        raise TypeError(f"x must be a dict of feature maps, got {type(x).__name__}")
    missing = [name for name in featmap_names if name not in x]
    if missing:
        raise ValueError(f"x has no feature map named {missing} (it has {list(x)})")
    features = _named_maps(x, featmap_names)
    check_pyramid(features, [name for name in x if name in featmap_names])
    num_images = features[0].shape[0]
    for what, value in (("boxes", boxes), ("image_shapes", image_shapes)):
        if isinstance(value, (str, Tensor)) or not isinstance(value, Sequence):
            raise TypeError(f"{what} must be a list with one entry per image, got {type(value).__name__}")
        if len(value) != num_images:
            raise ValueError(f"{what} has {len(value)} entries for {num_images} images")
    for i, size in enumerate(image_shapes):
        if isinstance(size, (str, Tensor)) or not isinstance(size, Sequence) or len(size) != 2:
            raise ValueError(f"image_sizes[{i}] must be a positive (h, w), got {size!r}")


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
    (:func:`impl.pooler.scale_exponents`, in integer arithmetic). torchvision infers
    from the height alone, once, on its first call; here the width must give the
    same scale and the scales must halve from level to level, else ``ValueError``.
    With torchvision's ``GeneralizedRCNNTransform`` (batch padded to a multiple of
    32) the two agree, and equal ``1 / stride``, whenever the batch's largest height
    and largest width are each at least 68 px (``tests/test_maskrcnn.py`` checks every
    side up to 1400 px); with the default ``min_size=800, max_size=1333`` that is
    any aspect ratio up to 19:1. On smaller sides padding can round the ratio to the
    wrong power of two: where height and width then disagree torchvision pools
    at a scale wrong for one axis and we raise; where they agree we infer what
    torchvision does.

    Boxes inverted along one axis (negative area) are pooled from the lowest
    level (:mod:`impl.levels`); torchvision's level for them is undefined
    (NaN cast to int64). Bad arguments raise ``TypeError`` / ``ValueError``
    naming them (in TorchScript those of the boxes, image sizes and scales; the
    operators check the data).

    Capture (:func:`multiscale_roi_align`): scriptable (``torch.jit.script`` of a whole
    Mask R-CNN), one leaf in ``torch.fx.symbolic_trace``, and one graph under
    ``torch.compile(fullgraph=True)``, with static or dynamic shapes: the forward checks
    metadata only, leaves the data (finite boxes) to the ``torch.ops.roialign_suite``
    operators, and its scales are guards on sizes, never on data. Compiled alone with
    Python ints as ``image_shapes``, it recompiles once more than torchvision's per
    batch size of 2 or more that comes back with other image sizes (dynamo specializes
    ints it sees first; we read them on every call, torchvision on its first only).
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
        check_canonical(canonical_scale, canonical_level, TORCHVISION_EPS)
        self.featmap_names = list(featmap_names)
        self.output_size = output_size_pair(output_size)
        self.sampling_ratio = check_sampling_ratio(sampling_ratio)
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        return multiscale_roi_align(
            x, boxes, image_shapes, self.featmap_names, self.output_size, self.sampling_ratio,
            float(self.canonical_scale), self.canonical_level,
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )

