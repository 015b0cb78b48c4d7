"""torchvision's RoIAlign kernels as implementations: CPU, CUDA, the pure-PyTorch path, and the FPN pooler.

An adapter takes CPU tensors (as every property and benchmark builds them),
runs torchvision's kernel on its device, and returns a CPU tensor, so the
same test can hold it next to ours. Gradients flow back through the copies.
``roi_align_native`` is torchvision's own entry point, for tensors already on
their device (what is timed). :class:`TorchvisionPooler` is
``torchvision.ops.MultiScaleRoIAlign`` behind the suite's pooler call.
"""
from __future__ import annotations

import inspect
import sys
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from roialign_suite.implementations.calling import cuda_unavailable, operator_arguments, run_on
from roialign_suite.implementations.records import (
    FLOAT_DTYPES, HALF_DTYPES, NEGATIVE_GRID_REFUSED, Divergence, Implementation, on_empty_map,
)
from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.pooler import pyramid_levels
from roialign_suite.reference.roi_align import sample_points


def roi_align_on(device: str):
    """``torchvision.ops.roi_align`` run on ``device``, taking and returning CPU tensors."""
    roi_align = run_on(torchvision.ops.roi_align, device)
    roi_align.__name__ = f"torchvision_roi_align_{device}"
    roi_align.__doc__ = f"torchvision.ops.roi_align on {device}, CPU tensors in and out."
    return roi_align


roi_align_cpu = roi_align_on("cpu")


def roi_align_cuda(*args, **kwargs):
    """torchvision.ops.roi_align on the GPU; raises if there is none."""
    reason = cuda_unavailable()
    if reason is not None:
        raise RuntimeError(f"torchvision CUDA RoIAlign needs a CUDA device: {reason}")
    return _ROI_ALIGN_CUDA(*args, **kwargs)


_ROI_ALIGN_CUDA = roi_align_on("cuda")

# torchvision's own entry point, for tensors already on their device (what is timed).
roi_align_native = torchvision.ops.roi_align


# torchvision's pure-PyTorch RoIAlign (``torchvision/ops/roi_align.py``), what
# ``torchvision.ops.roi_align`` runs under deterministic mode on GPUs and when
# its C++ ops are missing. The module attribute is wrapped by ``lazy_compile``
# (``torch.compile`` on first call, which then replaces the attribute); its
# ``__wrapped__`` chain ends at the plain function, run here in eager mode.
_PYTHON_ROI_ALIGN = inspect.unwrap(sys.modules["torchvision.ops.roi_align"]._roi_align)


def roi_align_python(input: Tensor, boxes: BoxesArg, output_size, spatial_scale=1.0, sampling_ratio=-1,
                     aligned=False) -> Tensor:
    """torchvision's pure-PyTorch ``_roi_align`` in eager mode, behind ``torchvision.ops.roi_align``'s
    signature; tensors stay on their device."""
    rois, pooled_height, pooled_width = operator_arguments(boxes, output_size)
    return _PYTHON_ROI_ALIGN(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


class TorchvisionPooler(nn.Module):
    """``torchvision.ops.MultiScaleRoIAlign`` called as ``pooler(features, boxes)``.

    torchvision infers the scales from the image size; give ``image_size``
    ``(h, w)``, or leave it ``None`` and give ``scales`` (the image is then
    ``features[0]``'s size divided by ``scales[0]``). Scales torchvision infers
    that differ from ``scales`` raise ``ValueError``, so a comparison never
    runs on silently different pyramids. ``Tensor[K, 5]`` boxes are split per
    image and the rows put back in input order.
    """

    def __init__(
        self,
        output_size,
        sampling_ratio: int,
        scales: Optional[Sequence[float]] = None,
        image_size: Optional[Tuple[int, int]] = None,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if scales is None and image_size is None:
            raise ValueError("TorchvisionPooler needs scales or image_size")
        if scales is not None:
            pyramid_levels(scales)
        self.scales = None if scales is None else [float(s) for s in scales]
        self.image_size = image_size
        self.output_size = inputs.output_size_pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, features: Sequence[Tensor], boxes: BoxesArg) -> Tensor:
        names = [str(i) for i in range(len(features))]
        module = torchvision.ops.MultiScaleRoIAlign(
            names,
            self.output_size,
            self.sampling_ratio,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
        )
        rois = inputs.rois_from_boxes(boxes, features[0])  # float64 on the CPU: exact batch indices
        per_image, order = _split_by_image(rois, features[0].shape[0])
        per_image = [b.to(dtype=features[0].dtype, device=features[0].device) for b in per_image]
        image_size = self._image_size(features[0])
        result = module(OrderedDict(zip(names, features)), per_image, [image_size] * features[0].shape[0])
        if self.scales is not None and module.scales != self.scales:
            raise ValueError(f"torchvision inferred scales {module.scales}, not {self.scales}")
        return result[torch.argsort(order).to(result.device)]

    def _image_size(self, first: Tensor) -> Tuple[int, int]:
        if self.image_size is not None:
            return tuple(self.image_size)
        return (round(first.shape[2] / self.scales[0]), round(first.shape[3] / self.scales[0]))


def _split_by_image(rois: Tensor, num_images: int) -> Tuple[List[Tensor], Tensor]:
    """``Tensor[K, 5]`` -> per-image ``Tensor[L, 4]`` and the input row of each concatenated row."""
    index = rois[:, 0].long()
    rows = [torch.nonzero(index == i).squeeze(1) for i in range(num_images)]
    return [rois[r, 1:] for r in rows], torch.cat(rows) if rows else index.new_zeros(0)


# torchvision's CPU kernel reads pixel (H - 1, W - 1) = (-1, ...) of a map without pixels.
TORCHVISION_EMPTY_MAP_SEGFAULT = Divergence(
    "empty-map-segfault",
    "a box on a map with H = 0 or W = 0: the definition gives zeros (no pixel to sample); torchvision's CPU "
    "kernel clamps the sample to row H - 1 = -1 and reads outside the map: the process dies with SIGSEGV",
    "known_divergences/torchvision_cpu_empty_map_segfault.json",
    boxes=on_empty_map,
    excluded=True,
)


# The largest finite float16.
FLOAT16_MAX = 65504.0


def _float16_extent_overflows(case, geometry) -> bool:
    """float16, and the box's width or height in feature pixels (torchvision computes it in the
    input's dtype) is past the largest float16 (a little early: from 65504, not 65520, where
    rounding reaches inf)."""
    return case.dtype == "float16" and max(abs(geometry.roi_w), abs(geometry.roi_h)) > FLOAT16_MAX


TORCHVISION_FLOAT16_EXTENT_OVERFLOW_SEGFAULT = Divergence(
    "float16-extent-overflow-segfault",
    "float16, a box wider or taller than 65504 feature pixels (e.g. x1 = -34000, x2 = 34000): torchvision's CPU "
    "kernel computes the RoI's width in float16, it overflows to inf, the bin size and the sample coordinates "
    "become inf/NaN and the integer tap index reads far outside the map: the process dies with SIGSEGV. The "
    "definition (and ours, with float64 coordinates) samples nothing inside the map there and gives 0",
    "known_divergences/torchvision_cpu_float16_extent_overflow_segfault.json",
    boxes=_float16_extent_overflows,
    excluded=True,
)


def _samples_outside_the_map(case, geometry) -> bool:
    _, _, height, width = case.shape
    return any(y < -1 or y > height or x < -1 or x > width
               for _, _, y, x in sample_points(geometry, case.output_size))


# torchvision's pure-PyTorch RoIAlign (torchvision.ops.roi_align._roi_align), four ways.
TORCHVISION_PYTHON_OUTSIDE_SAMPLES_COUNT = Divergence(
    "outside-samples-count",
    "a sample outside [-1, H] x [-1, W] contributes 0 by the definition (and torchvision's C++/CUDA kernels); "
    "torchvision's pure-PyTorch _roi_align has no such test: it clamps the sample onto the border row/column "
    "and counts it",
    "known_divergences/torchvision_python_sample_outside_map_counts_*.json",
    boxes=_samples_outside_the_map,
)


def _adaptive(case) -> bool:
    return case.sampling_ratio <= 0


TORCHVISION_PYTHON_GRID_CAPPED = Divergence(
    "adaptive-grid-capped-at-map-size",
    "an adaptive grid of more samples per bin than the map has rows (columns): _roi_align samples at most H "
    "(W) of them (torch.arange(height) masked by the grid) but still divides by the full grid_h * grid_w",
    "known_divergences/torchvision_python_adaptive_grid_exceeds_map.json",
    boxes=lambda case, g: g.grid_h > case.shape[2] or g.grid_w > case.shape[3],
    cases=_adaptive,
)
TORCHVISION_PYTHON_EMPTY_GRID_NAN_GRADIENT = Divergence(
    "empty-adaptive-grid-nan-gradient",
    "aligned=True, an adaptive grid with no samples (a zero-size box, or one inverted along one axis): the "
    "output is 0 as defined, but _roi_align divides bin_size by the grid of 0 and masks the result with "
    "torch.where, whose backward turns the masked inf/NaN into a NaN gradient",
    "known_divergences/torchvision_python_empty_adaptive_grid_nan_gradient.json",
    boxes=lambda case, g: g.grid_h * g.grid_w <= 0,
    cases=lambda case: case.aligned and _adaptive(case),
)
TORCHVISION_PYTHON_EMPTY_MAP_REFUSED = Divergence(
    "empty-map-refused",
    "a box on a map with H = 0 or W = 0 and a fixed grid: _roi_align indexes the empty map and raises "
    "IndexError where the definition gives zeros (an accepted refusal; the adaptive grid computes the zeros)",
    "zero_sizes.json",
    boxes=on_empty_map,
    cases=lambda case: not _adaptive(case),
    excluded=True,
)



PACKAGES = ("torchvision",)


def _pooler(output_size, sampling_ratio, scales):
    return TorchvisionPooler(output_size, sampling_ratio, scales=scales)


def records() -> List[Implementation]:
    """torchvision's CPU kernel, its pure-PyTorch kernel and its CUDA kernel."""
    return [
        Implementation(
            "torchvision-cpu", roi_align_cpu, native=roi_align_native,
            verified_by_default=True, dtypes=(torch.float16,) + FLOAT_DTYPES,
            divergences=(NEGATIVE_GRID_REFUSED, TORCHVISION_EMPTY_MAP_SEGFAULT,
                         TORCHVISION_FLOAT16_EXTENT_OVERFLOW_SEGFAULT), pooler=_pooler, packages=PACKAGES,
            baseline=True, in_roi_sweeps=True, multiscale_roi_align=torchvision.ops.MultiScaleRoIAlign,
            operator=torch.ops.torchvision.roi_align.default,
        ),
        # Run explicitly (--roialign-implementation=torchvision-python), never by default: it
        # diverges by design, and compiling it costs ~100 s (docs/operator_contract.md).
        Implementation(
            "torchvision-python", roi_align_python, dtypes=HALF_DTYPES + FLOAT_DTYPES, packages=PACKAGES,
            xfails="torchvision-python.txt",
            not_timed="in eager mode it materialises every tap as [K, C, h, w, grid_h, grid_w] tensors (every map "
                      "row and column under adaptive sampling); torchvision runs it compiled",
            divergences=(TORCHVISION_PYTHON_OUTSIDE_SAMPLES_COUNT, TORCHVISION_PYTHON_GRID_CAPPED,
                         TORCHVISION_PYTHON_EMPTY_GRID_NAN_GRADIENT, TORCHVISION_PYTHON_EMPTY_MAP_REFUSED),
        ),
        Implementation(
            "torchvision-cuda", roi_align_cuda, native=roi_align_native,
            device="cuda", verified_by_default=True, unavailable=cuda_unavailable(),
            dtypes=HALF_DTYPES + FLOAT_DTYPES, divergences=(NEGATIVE_GRID_REFUSED,), pooler=_pooler, packages=PACKAGES,
            in_roi_sweeps=True,
        ),
    ]
