"""Our CPU RoIAlign and the FPN box-head path built on it.

- ``threads``: Numba's threading layer (TBB, else workqueue with our calls
  serialised), chosen on import before any kernel runs; ``kernel_threads``.
- ``roi_align`` / ``RoIAlign``: Numba forward and backward kernels (``kernels``),
  a drop-in for ``torchvision.ops.roi_align`` / ``RoIAlign``.
- ``inputs``: argument checks shared by every front end.
- ``levels``: FPN level assignment (``LevelMapper``, ``levels_for_boxes``), three named dialects.
- ``pooler``: the multi-level ``Pooler`` and scale handling (``fpn_box_head_pooler``).
- ``multiscale``: ``MultiScaleRoIAlign``, a drop-in for torchvision's (detection models' poolers).
- ``extractors``: box-head feature extractors (``FPN2MLPFeatureExtractor``, C4 variant).
"""
from roialign_suite.impl import threads  # first: picks Numba's threading layer before any kernel can run
from roialign_suite.impl.roi_align import RoIAlign, roi_align
from roialign_suite.impl.levels import LevelMapper, levels_for_boxes
from roialign_suite.impl.pooler import Pooler, c4_box_head_pooler, fpn_box_head_pooler, infer_scales
from roialign_suite.impl.multiscale import MultiScaleRoIAlign
from roialign_suite.impl.extractors import FPN2MLPFeatureExtractor, ResNet50Conv5ROIFeatureExtractor

__all__ = [
    "RoIAlign",
    "roi_align",
    "LevelMapper",
    "levels_for_boxes",
    "Pooler",
    "c4_box_head_pooler",
    "fpn_box_head_pooler",
    "infer_scales",
    "MultiScaleRoIAlign",
    "FPN2MLPFeatureExtractor",
    "ResNet50Conv5ROIFeatureExtractor",
]
