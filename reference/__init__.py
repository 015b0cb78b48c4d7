"""Oracles: what the implementations under test are compared with.

- ``roi_align`` / ``RoIAlign``: float64 RoIAlign written from the definition.
- ``torchvision_ops``: torchvision's CPU and CUDA kernels behind our interface.
- ``levels``: each FPN level-assignment dialect per box in float64; torchvision's LevelMapper adapter.
- ``pooler``: the multi-level pooler on the float64 parts; torchvision's MultiScaleRoIAlign adapter.

"""
from roialign_suite.reference.roi_align import RoIAlign, roi_align
from roialign_suite.reference import levels, pooler

__all__ = ["RoIAlign", "roi_align"]
