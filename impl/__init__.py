"""Our CPU RoIAlign and the FPN box-head path built on it.

- ``roi_align`` / ``RoIAlign``: Numba forward and backward kernels (``kernels``),
  a drop-in for ``torchvision.ops.roi_align`` / ``RoIAlign``.
- ``inputs``: argument checks shared by every front end.
"""
from impl.roi_align import RoIAlign, roi_align

__all__ = ["RoIAlign", "roi_align"]
