"""Oracles: what the implementations under test are compared with.

- ``inputs``: the oracles' own argument checks, from torchvision's documented contract.
- ``roi_align`` / ``RoIAlign``: float64 RoIAlign written from the definition.
- ``levels``: each FPN level-assignment dialect per box in float64; torchvision's LevelMapper adapter.
- ``pooler``: the multi-level pooler as a loop over boxes on the float64 parts.

Nothing here imports ``roialign_suite.impl`` or ``roialign_suite.implementations``: the oracles
share no code with what they check (``tests/test_oracle_independence.py``). The adapters that
put other kernels under test live in ``implementations/``.

"""
from roialign_suite.reference.roi_align import RoIAlign, roi_align
from roialign_suite.reference import inputs, levels, pooler

__all__ = ["RoIAlign", "roi_align"]
