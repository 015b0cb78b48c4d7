"""Oracles: what the implementations under test are compared with.

- ``inputs``: the oracles' own argument checks, from torchvision's documented contract.
- ``roi_align`` / ``RoIAlign``: float64 RoIAlign written from the definition.
- ``torchvision_ops``: torchvision's CPU and CUDA kernels behind our interface.
- ``levels``: each FPN level-assignment dialect per box in float64; torchvision's LevelMapper adapter.
- ``pooler``: the multi-level pooler as a loop over boxes on the float64 parts; torchvision's MultiScaleRoIAlign adapter.

Nothing here imports ``roialign_suite.impl``: the oracles share no code with
what they check (``tests/test_oracle_independence.py``).

"""
from roialign_suite.reference.roi_align import RoIAlign, roi_align
from roialign_suite.reference import inputs, levels, pooler

__all__ = ["RoIAlign", "roi_align"]
