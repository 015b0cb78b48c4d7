"""The named benchmark workloads and their inputs.

Every workload is one pytest-benchmark group; its name ends in ``-fwd``
(forward) or ``-fwdbwd`` (forward then the gradient w.r.t. the features).
Shapes are Mask R-CNN's on 800x1216 images: FPN levels P2..P5 (strides
4..32, maps 200x304 .. 25x38), C4 at stride 16. Boxes are in image pixels,
float32 features, ``aligned=False`` (maskrcnn_benchmark's convention).

The model workloads (:class:`ModelWorkload`) time torchvision's whole Mask
R-CNN with each ``MultiScaleRoIAlign`` instead of one RoIAlign call.

Dtype pairs (:func:`dtype_pair`): the same channels_last workload in
float32 and in bfloat16, on the same boxes (rounded to bfloat16 for both)
and the same standard-normal maps (rounded to each dtype); the bfloat16 one
names the float32 one in ``compared_with``, and the summary reports float32
median / bfloat16 median from the same run against ``target_speedup``
(issue 15: bfloat16 channels_last forward at least 1.5x faster than float32
channels_last on P2 and on the FPN pooler).

``ROIALIGN_BENCH_QUICK=1`` (or ``--quick``) shrinks every workload to a toy
size with :meth:`Workload.quick` / :meth:`ModelWorkload.quick`, so CI can run
the whole pipeline in seconds; those timings mean nothing.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from roialign_suite.impl.inputs import rois_from_boxes
from roialign_suite.implementations import registry
from roialign_suite.implementations.naming import is_target

IMAGE_SIZE = (800, 1216)  # (h, w) in pixels, every map size divides exactly
FPN_STRIDES = (4, 8, 16, 32)  # P2..P5
C4_STRIDE = 16
# sqrt(area) of proposals, log-uniform, at an 800-pixel image height: 32 to 800
# sends ~39% / 22% / 22% / 18% of the boxes to P2 / P3 / P4 / P5 under the
# LevelMapper (thresholds 112, 224, 448), so every level is used.
BOX_SIDE_RANGE = (32.0, 800.0)
ASPECT_RANGE = (0.5, 2.0)  # width / height, log-uniform
QUICK_IMAGE_SIZE = (64, 96)


@dataclass(frozen=True)
class Workload:
    """One timed configuration.

    ``op`` is ``"roi_align"`` (one call on ``strides[0]``'s map),
    ``"pooler"`` (the multi-level ``impl.Pooler``) or ``"extractor"``
    (``impl.FPN2MLPFeatureExtractor``). ``sweep``/``value`` place a sweep
    point on its axis (for the plots); ``threads=None`` keeps the defaults.
    """

    name: str
    op: str
    strides: Tuple[int, ...]
    channels: int
    rois_per_image: int
    output_size: int
    sampling_ratio: int
    backward: bool = False
    images: int = 2
    image_size: Tuple[int, int] = IMAGE_SIZE
    aligned: bool = False
    threads: Optional[int] = None
    channels_last: bool = False
    sweep: Optional[str] = None
    value: object = None
    dtype: str = "float32"  # of the features, boxes and output gradient
    # The dtype the box coordinates are rounded to first (a dtype pair shares box values), or None.
    box_dtype: Optional[str] = None
    # The workload (same shapes, float32) whose median this one's is compared with, and the
    # speedup over it aimed at (reported, not asserted).
    compared_with: Optional[str] = None
    target_speedup: Optional[float] = None
    # The built-in implementations timed on it (None: all); plug-in targets always are.
    implementations: Optional[Tuple[str, ...]] = None

    def times(self, implementation: str) -> bool:
        """Whether ``implementation`` is timed on this workload."""
        return self.implementations is None or implementation in self.implementations or is_target(implementation)

    @property
    def num_rois(self) -> int:
        return self.images * self.rois_per_image

    @property
    def scales(self) -> Tuple[float, ...]:
        return tuple(1.0 / s for s in self.strides)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def direction(self) -> str:
        return "fwdbwd" if self.backward else "fwd"

    def feature_shapes(self) -> List[Tuple[int, int, int, int]]:
        """``[N, C, H, W]`` of each level, finest first."""
        h, w = self.image_size
        return [(self.images, self.channels, h // s, w // s) for s in self.strides]

    def quick(self) -> "Workload":
        """The same workload at toy size (CI smoke run: checks function, not speed)."""
        return replace(
            self,
            image_size=QUICK_IMAGE_SIZE,
            channels=max(self.channels // 32, 2),
            rois_per_image=max(self.rois_per_image // 64, 2),
        )


@dataclass
class Inputs:
    """A workload's tensors: built once, outside the timed region."""

    features: List[Tensor]  # one [N, C, H, W] map per level (the workload's dtype), finest first
    boxes: List[Tensor]  # per image Tensor[L, 4], (x1, y1, x2, y2) image pixels
    rois: Tensor  # Tensor[K, 5], (batch_index, x1, y1, x2, y2)


def _both_directions(name: str, **fields) -> List[Workload]:
    return [Workload(f"{name}-{d}", backward=(d == "fwdbwd"), **fields) for d in ("fwd", "fwdbwd")]


def dtype_pair(name: str, dtype: str = "bfloat16", target_speedup: Optional[float] = None, **fields) -> List[Workload]:
    """``name-channels-last-float32-{fwd,fwdbwd}`` and the same in ``dtype``, compared with it;
    ``target_speedup`` (float32 median / ``dtype`` median) applies to the forward."""
    workloads = []
    for baseline in _both_directions(f"{name}-channels-last-float32", channels_last=True, box_dtype=dtype, **fields):
        workloads += [baseline, replace(
            baseline, name=f"{name}-channels-last-{dtype}-{baseline.direction}", dtype=dtype,
            compared_with=baseline.name, target_speedup=None if baseline.backward else target_speedup,
        )]
    return workloads


# RoI counts of the sweeps on P2, the FPN pooler and the mask-head pooler (issue 15: at least 2x
# torchvision's forward at every one), timed on the records marked ``in_roi_sweeps`` only (ours and
# torchvision's: peers would add minutes).
ROI_COUNTS = (16, 64, 128, 256, 1024, 4096)
ROI_SWEEPS = {
    "p2": dict(op="roi_align", strides=FPN_STRIDES[:1], output_size=7),
    "fpn-pooler": dict(op="pooler", strides=FPN_STRIDES, output_size=7),
    "mask-pooler": dict(op="pooler", strides=FPN_STRIDES, output_size=14),
}


def roi_sweeps() -> List[Workload]:
    """``sweep-rois-{p2,fpn-pooler,mask-pooler}-{count}-fwd``: each family's forward at each of :data:`ROI_COUNTS`
    (C=256, sampling 2, two images); ``sweep`` is ``rois-{family}``, ``value`` the count."""
    timed = registry.names_where("in_roi_sweeps")
    return [
        Workload(f"sweep-rois-{family}-{count}-fwd", channels=256, rois_per_image=count // 2, sampling_ratio=2,
                 sweep=f"rois-{family}", value=count, implementations=timed, **fields)
        for family, fields in ROI_SWEEPS.items() for count in ROI_COUNTS
    ]


def _sweep_point(axis: str, value, **changes) -> Workload:
    fields = dict(op="roi_align", strides=FPN_STRIDES[:1], channels=256, rois_per_image=256, output_size=7, sampling_ratio=2)
    fields.update(changes)
    return Workload(f"sweep-{axis}-{value}-fwd", sweep=axis, value=value, **fields)


def all_workloads() -> List[Workload]:
    """Every workload, in run order (the heavy Mask R-CNN heads first, then the sweeps)."""
    fpn = dict(strides=FPN_STRIDES, channels=256, rois_per_image=512, sampling_ratio=2)
    finest = dict(fpn, strides=FPN_STRIDES[:1])
    return [
        *_both_directions("box-head-fpn-pooler", op="pooler", output_size=7, **fpn),
        *_both_directions("box-head-p2", op="roi_align", output_size=7, **finest),
        *_both_directions("mask-head-fpn-pooler", op="pooler", output_size=14, **fpn),
        *_both_directions("mask-head-p2", op="roi_align", output_size=14, **finest),
        # C4 trains on one image per GPU: one 800x1216 image, 512 RoIs.
        *_both_directions(
            "c4-head", op="roi_align", strides=(C4_STRIDE,), channels=1024, images=1, rois_per_image=512,
            output_size=14, sampling_ratio=0,
        ),
        Workload("fpn2mlp-extractor-fwd", op="extractor", output_size=7, **fpn),
        *dtype_pair("box-head-p2", target_speedup=1.5, op="roi_align", output_size=7, **finest),
        *dtype_pair("box-head-fpn-pooler", target_speedup=1.5, op="pooler", output_size=7, **fpn),
        *roi_sweeps(),
        *[_sweep_point("channels", c, channels=c) for c in (64, 256)],
        *[_sweep_point("output", s, output_size=s) for s in (7, 14)],
        *[_sweep_point("threads", t, threads=t) for t in (1, 2)],
        *[_sweep_point("layout", layout, channels_last=(layout == "channels_last")) for layout in ("contiguous", "channels_last")],
    ]


MODEL_IMAGE_SIZE = (480, 640)
QUICK_MODEL_IMAGE_SIZE = (64, 96)


@dataclass(frozen=True)
class ModelWorkload:
    """torchvision's Mask R-CNN (ResNet-50-FPN, random weights, float32) with each RoI pooler.

    ``train``: one training step, the forward of ``model(images, targets)``
    and the backward of the summed losses; else one eval forward
    ``model(images)`` under ``torch.no_grad()``. ``implementations`` are the
    poolers it is timed with (``benchmarks.maskrcnn.pooler``), not the registry.

    Sizes. RoI counts are torchvision's defaults: per image, ``proposals``
    RPN boxes kept before and after NMS (2000 in training, 1000 at test),
    512 sampled for the box head in training, up to 100 detections (which
    the mask head pools) at test. The images are two 480x640 (VGA) frames
    rather than COCO's 800x1333: a train step at 800x1216 took 75-95 s on
    the shared 2-core development machine (17-20 s at 480x640), too long to
    repeat per pooler in every benchmark run. The backbone's cost scales
    with the image area and the poolers' with the RoI count, so RoI pooling
    takes a larger share of the step here than at 800 px. ``num_classes=2``
    (one object class, as in torchvision's fine-tuning tutorial): with random
    weights every class scores about ``1 / num_classes``, so the foreground
    class passes the default 0.05 score threshold and NMS sees about one
    candidate per proposal, as with a trained model (with 91 classes at about
    0.011 each, few or none would pass; without the threshold, NMS would see 90
    per proposal).
    """

    name: str
    train: bool
    images: int = 2
    image_size: Tuple[int, int] = MODEL_IMAGE_SIZE
    objects: int = 7  # ground-truth boxes per image (COCO averages 7.3)
    num_classes: int = 2
    proposals: int = 2000
    box_batch: int = 512
    detections: int = 100
    # The records with a ``multiscale_roi_align`` (torchvision's and ours), in registry order.
    implementations: Tuple[str, ...] = field(default_factory=lambda: registry.names_where("multiscale_roi_align"))

    @property
    def direction(self) -> str:
        return "train" if self.train else "eval"

    def image_sizes(self) -> List[Tuple[int, int]]:
        return [self.image_size] * self.images

    def model_kwargs(self) -> dict:
        """Keyword arguments for ``maskrcnn_resnet50_fpn`` (images are not resized)."""
        stage = "train" if self.train else "test"
        return {
            "num_classes": self.num_classes,
            "min_size": min(self.image_size),
            "max_size": max(self.image_size),
            f"rpn_pre_nms_top_n_{stage}": self.proposals,
            f"rpn_post_nms_top_n_{stage}": self.proposals,
            "box_batch_size_per_image": self.box_batch,
            "box_detections_per_img": self.detections,
        }

    def quick(self) -> "ModelWorkload":
        """Toy size (CI smoke run): 64x96 images, a few dozen RoIs."""
        return replace(self, image_size=QUICK_MODEL_IMAGE_SIZE, objects=2, proposals=50, box_batch=32, detections=10)


def all_model_workloads() -> List[ModelWorkload]:
    """The Mask R-CNN workloads: a train step and an eval forward."""
    return [ModelWorkload("maskrcnn-train", train=True), ModelWorkload("maskrcnn-eval", train=False, proposals=1000)]


def realistic_boxes(count: int, image_size: Tuple[int, int], generator: torch.Generator) -> Tensor:
    """``count`` proposal-like boxes ``Tensor[count, 4]`` inside an ``(h, w)`` image.

    ``sqrt(area)`` is log-uniform over :data:`BOX_SIDE_RANGE` (scaled to the
    image height), aspect ratio log-uniform over :data:`ASPECT_RANGE`, centres
    uniform; boxes are clipped to the image, as proposals are.
    """
    h, w = image_size
    low, high = (side * h / IMAGE_SIZE[0] for side in BOX_SIDE_RANGE)
    side = torch.exp(_uniform(count, math.log(low), math.log(high), generator))
    aspect = torch.exp(_uniform(count, math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), generator))
    box_w, box_h = side * aspect.sqrt(), side / aspect.sqrt()
    cx, cy = _uniform(count, 0.0, w, generator), _uniform(count, 0.0, h, generator)
    boxes = torch.stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return boxes


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.rand(count, generator=generator, dtype=torch.float64).mul(high - low).add(low).float()


@functools.lru_cache(maxsize=6)
def feature_map(shape: Tuple[int, int, int, int], channels_last: bool, seed: int = 0, dtype: str = "float32") -> Tensor:
    """A standard-normal map in ``dtype`` (float32 values rounded), the same tensor for every
    workload of that shape (read-only)."""
    # hash() of a tuple of ints is the same in every run.
    generator = torch.Generator().manual_seed(seed + hash(shape) % (1 << 31))
    features = torch.randn(shape, generator=generator).to(getattr(torch, dtype))
    return features.contiguous(memory_format=torch.channels_last) if channels_last else features


def build_inputs(workload: Workload, seed: int = 0) -> Inputs:
    """Features (standard normal) and boxes of ``workload``, deterministic in ``seed``."""
    features = [feature_map(shape, workload.channels_last, seed, workload.dtype) for shape in workload.feature_shapes()]
    generator = torch.Generator().manual_seed(seed)
    boxes = [realistic_boxes(workload.rois_per_image, workload.image_size, generator) for _ in range(workload.images)]
    if workload.box_dtype is not None:
        boxes = [b.to(getattr(torch, workload.box_dtype)) for b in boxes]
    boxes = [b.to(workload.torch_dtype) for b in boxes]
    return Inputs(features, boxes, rois_from_boxes(boxes, features[0]))
