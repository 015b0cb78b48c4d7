"""Oracles: what the implementations under test are compared with.

- ``roi_align`` / ``RoIAlign``: float64 RoIAlign written from the definition.
- ``torchvision_ops``: torchvision's CPU and CUDA kernels behind our interface.
- ``registry``: the named implementations the properties and benchmarks iterate over.
"""
from reference.roi_align import RoIAlign, roi_align

__all__ = ["RoIAlign", "roi_align"]
