"""Box-head feature extractors of Mask R-CNN, with a pluggable pooler.

Any module called as ``pooler(features, boxes) -> [K, C, h, w]`` fits
(``impl.Pooler``, ``implementations.torchvision.TorchvisionPooler``...), so swapping
ours for another is a one-argument change. No pretrained weights.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from roialign_suite.impl.inputs import BoxesArg
from roialign_suite.impl.pooler import c4_box_head_pooler


def make_fc(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer initialised as maskrcnn_benchmark's box head: Kaiming uniform (a=1), zero bias."""
    fc = nn.Linear(in_features, out_features)
    nn.init.kaiming_uniform_(fc.weight, a=1)
    nn.init.zeros_(fc.bias)
    return fc


class FPN2MLPFeatureExtractor(nn.Module):
    """pooler -> flatten -> fc6 -> ReLU -> fc7 -> ReLU: ``(features, boxes) -> [K, representation_size]``.

    ``in_channels`` and ``resolution`` must match the pooler's ``C`` and
    output size (``[K, in_channels, resolution, resolution]``).
    """

    def __init__(self, pooler: nn.Module, in_channels: int, resolution: int = 7, representation_size: int = 1024):
        super().__init__()
        self.pooler = pooler
        self.fc6 = make_fc(in_channels * resolution * resolution, representation_size)
        self.fc7 = make_fc(representation_size, representation_size)

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        x = self.pooler(features, boxes).flatten(start_dim=1)
        x = F.relu(self.fc6(x))
        return F.relu(self.fc7(x))


class ResNet50Conv5ROIFeatureExtractor(nn.Module):
    """The C4 box head's pooling step, then ``head``: ``(features, boxes) -> head([K, C, 14, 14])``.

    The default pooler is :func:`impl.pooler.c4_box_head_pooler` (one level
    at 1/16, 14x14, adaptive sampling); ``head`` stands in for ResNet's
    conv5 stage and defaults to ``nn.Identity``.
    """

    def __init__(self, pooler: Optional[nn.Module] = None, head: Optional[nn.Module] = None):
        super().__init__()
        self.pooler = c4_box_head_pooler() if pooler is None else pooler
        self.head = nn.Identity() if head is None else head

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        return self.head(self.pooler(features, boxes))
