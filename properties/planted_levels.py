"""Level mappers with torchvision's interface, to show the level properties catching a wrong dialect.

Each is ``torchvision.ops.poolers.LevelMapper`` (constructor ``(k_min,
k_max, canonical_scale, canonical_level, eps)``, called with a list of
per-image ``Tensor[L, 4]``, 0-based int64 levels) with its formula changed:

- :class:`PlusOneLevelMapper`: broken for the torchvision dialect it claims:
  it adds maskrcnn_benchmark's legacy +1 to both sides (a port from old code).
  Every invariant holds; only boxes within about a pixel below a threshold
  get the level above.
- :class:`EpsInsideLevelMapper`: broken for the torchvision dialect: eps
  inside the log (``log2(s / s0 + eps)``), not after it. It differs only in
  float64 boxes within ~1e-6 of a threshold side.
- :class:`MaskrcnnBenchmarkLevelMapper`: correct, for the maskrcnn_benchmark
  dialect: maskrcnn_benchmark's own formula (+1 on both sides, eps inside
  the log), written out as that framework does. Claimed as torchvision, it
  is wrong the way :class:`PlusOneLevelMapper` is.

Used by ``tests/test_level_mapper_dialect.py``::

    python -m pytest properties/test_level_assignment.py \\
        --roialign-level-mapper=roialign_suite.properties.planted_levels:PlusOneLevelMapper
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops.poolers import LevelMapper


class _RewrittenLevelMapper(LevelMapper):
    """torchvision's LevelMapper with the side offset and the eps placement as class attributes."""

    side_offset = 0.0
    eps_inside_log = False

    def __call__(self, boxlists: Sequence[Tensor]) -> Tensor:
        boxes = torch.cat(list(boxlists))
        sides = boxes[:, 2:] - boxes[:, :2] + self.side_offset
        s = torch.sqrt(sides[:, 0] * sides[:, 1])
        if self.eps_inside_log:
            target_lvls = torch.floor(self.lvl0 + torch.log2(s / self.s0 + self.eps))
        else:
            target_lvls = torch.floor(self.lvl0 + torch.log2(s / self.s0) + torch.tensor(self.eps, dtype=s.dtype))
        target_lvls = torch.clamp(target_lvls, min=self.k_min, max=self.k_max)
        return target_lvls.to(torch.int64) - self.k_min


class PlusOneLevelMapper(_RewrittenLevelMapper):
    """torchvision's formula on sides ``x2 - x1 + 1`` and ``y2 - y1 + 1`` (wrong for the torchvision dialect)."""

    side_offset = 1.0


class EpsInsideLevelMapper(_RewrittenLevelMapper):
    """torchvision's sides with eps inside the log (wrong for the torchvision dialect)."""

    eps_inside_log = True


class MaskrcnnBenchmarkLevelMapper(_RewrittenLevelMapper):
    """maskrcnn_benchmark's LevelMapper: sides ``+ 1``, eps inside the log (right for the maskrcnn_benchmark dialect)."""

    side_offset = 1.0
    eps_inside_log = True
