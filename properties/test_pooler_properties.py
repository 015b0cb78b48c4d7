"""Properties of the multi-level pooler (``impl.Pooler``) and the FPN box head built on it.

Cases are P2-P5 pyramids (scales 1/4 .. 1/32) of small images, with the
canonical scale 16 (``k0 = 4``) so that boxes a few pixels to a few tens of
pixels wide spread over all four levels: side < 8 -> P2, 8-15 -> P3,
16-31 -> P4, >= 32 -> P5. Coordinates are on a 1/4-pixel grid.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import List, Tuple

import torch
from hypothesis import given
from hypothesis import strategies as st

from roialign_suite import impl
from roialign_suite.impl.cost_model import PATHS, forward_path
from roialign_suite.impl.extractors import FPN2MLPFeatureExtractor
from roialign_suite.impl.levels import DIALECTS
from roialign_suite.impl.pooler import Pooler
from roialign_suite.properties.strategies import FULL_PRECISION
from roialign_suite.properties.tolerances import gamma, unit_roundoff
from roialign_suite.reference import levels as ref_levels
from roialign_suite.implementations.torchvision import TorchvisionPooler
from roialign_suite.reference import pooler as ref_pooler

SCALES = (0.25, 0.125, 0.0625, 0.03125)
K_MIN, K_MAX = 2, 5
CANONICAL = {"canonical_scale": 16, "canonical_level": 4}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class PoolerCase:
    """One pooler call; features are ``randn`` from ``seed`` at the pyramid of ``image``."""

    image: Tuple[int, int]
    num_images: int
    channels: int
    boxes: Tuple[Tuple[Tuple[float, float, float, float], ...], ...]  # per image
    output_size: int
    sampling_ratio: int
    aligned: bool
    dialect: str
    dtype: str
    seed: int

    def features(self) -> List[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        return [
            torch.randn(self.num_images, self.channels, math.ceil(self.image[0] * s), math.ceil(self.image[1] * s),
                        dtype=torch.float64, generator=gen).to(DTYPES[self.dtype])
            for s in SCALES
        ]

    def box_lists(self) -> List[torch.Tensor]:
        return [torch.tensor(b, dtype=DTYPES[self.dtype]).reshape(-1, 4) for b in self.boxes]

    def rois(self) -> torch.Tensor:
        return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(self.box_lists())])

    def pooler(self) -> Pooler:
        return Pooler(self.output_size, SCALES, self.sampling_ratio, self.aligned, self.dialect, **CANONICAL)


quarters = st.integers(0, 4 * 48).map(lambda n: n / 4)


# Sides (1/4 px) that put a square box on P2, P3, P4, P5 (s0 = 16, k0 = 4).
LEVEL_SIDES = ((1, 31), (32, 63), (64, 127), (128, 255))


@st.composite
def boxes_in(draw, image):
    """A box inside ``image`` with positive sides on the 1/4 grid, sized for a drawn level, starting
    >= 4 px from the far edges.

    Every sample then lands in the maps: legacy RoIAlign stretches a box under
    one feature pixel (4 px at P2, where such boxes go) to one pixel.
    """
    low, high = LEVEL_SIDES[draw(st.integers(0, len(LEVEL_SIDES) - 1))]
    corner = []
    for extent in (image[1], image[0]):
        side = min(draw(st.integers(low, high)), 4 * extent)
        start = draw(st.integers(0, min(4 * extent - side, 4 * (extent - 4))))
        corner.append((start / 4, (start + side) / 4))
    (x1, x2), (y1, y2) = corner
    return (x1, y1, x2, y2)


@st.composite
def loose_boxes(draw, image):
    """Boxes anywhere: crossing the border, degenerate or inverted, on the 1/4 grid."""
    x1, y1 = draw(st.integers(-32, 4 * (image[1] + 8))) / 4, draw(st.integers(-32, 4 * (image[0] + 8))) / 4
    return (x1, y1, x1 + draw(quarters) - 4, y1 + draw(quarters) - 4)


@st.composite
def pooler_cases(draw, inside=False, dtypes=FULL_PRECISION, dialects=tuple(sorted(DIALECTS)),
                 aligned=(False, True), sampling_ratios=(0, 1, 2), image_sides=(8, 48)):
    image = (draw(st.integers(*image_sides)), draw(st.integers(*image_sides)))
    num_images = draw(st.integers(1, 3))
    box = boxes_in(image) if inside else st.one_of(boxes_in(image), loose_boxes(image))
    boxes = tuple(tuple(draw(st.lists(box, max_size=4))) for _ in range(num_images))
    return PoolerCase(
        image=image,
        num_images=num_images,
        channels=draw(st.integers(1, 3)),
        boxes=boxes,
        output_size=draw(st.integers(1, 3)),
        sampling_ratio=draw(st.sampled_from(sampling_ratios)),
        aligned=draw(st.sampled_from(aligned)),
        dialect=draw(st.sampled_from(dialects)),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
    )


def _candidate_levels(case: PoolerCase, row) -> List[int]:
    """The level the float64 formula gives ``row``, and its neighbour when within the dtype's rounding band."""
    value = ref_levels.level_value(row, dialect=case.dialect, **CANONICAL)
    level = ref_levels.level_for_box(row, K_MIN, K_MAX, dialect=case.dialect, **CANONICAL)
    if ref_levels.near_threshold(value, K_MIN, K_MAX, ref_levels.threshold_band(DTYPES[case.dtype])):
        return [level, level - 1] if value >= round(value) else [level, level + 1]
    return [level]


@given(case=pooler_cases())
def test_pooler_equals_roi_align_on_each_boxs_assigned_level(case):
    features, rois = case.features(), case.rois()
    out = case.pooler()(features, case.box_lists())
    assert out.shape == (rois.shape[0], case.channels, case.output_size, case.output_size)
    for k, row in enumerate(rois[:, 1:].double().tolist()):
        matches = [
            torch.equal(out[k : k + 1], impl.roi_align(features[level], rois[k : k + 1], case.output_size,
                                                       SCALES[level], case.sampling_ratio, case.aligned))
            for level in _candidate_levels(case, row)
        ]
        assert any(matches), (k, row)


@given(case=pooler_cases(), data=st.data())
def test_outputs_in_input_order(case, data):
    rois = case.rois()
    order = data.draw(st.permutations(range(rois.shape[0])))
    pooler, features = case.pooler(), case.features()
    shuffled = pooler(features, rois[list(order)])
    assert torch.equal(shuffled, pooler(features, case.box_lists())[list(order)])


def _reference_levels(case: PoolerCase, rois: torch.Tensor) -> torch.Tensor:
    """Levels from the float64 formula; float64 cases on the 1/4 grid are never within its band of a threshold."""
    assert case.dtype == "float64"
    for row in rois[:, 1:].tolist():
        value = ref_levels.level_value(row, dialect=case.dialect, **CANONICAL)
        assert not ref_levels.near_threshold(value, K_MIN, K_MAX, ref_levels.threshold_band(torch.float64)), row
    return ref_levels.levels_for_boxes(rois[:, 1:], K_MIN, K_MAX, dialect=case.dialect, **CANONICAL)


@given(case=pooler_cases(dtypes=("float64",)))
def test_empty_levels_and_images(case):
    # One level's boxes alone: every other level empty, and images without boxes, in both box forms.
    pooler, features, rois = case.pooler(), case.features(), case.rois()
    levels = _reference_levels(case, rois)
    for level in range(len(SCALES)):
        alone = rois[levels == level]
        expected = impl.roi_align(features[level], alone, case.output_size, SCALES[level], case.sampling_ratio,
                                  case.aligned)
        per_image = [alone[alone[:, 0] == i, 1:] for i in range(case.num_images)]
        assert torch.equal(pooler(features, alone), expected)
        assert torch.equal(pooler(features, per_image), expected)


@given(case=pooler_cases(inside=True, dtypes=("float64",)))
def test_gradients_reach_only_the_levels_used(case):
    features = [f.requires_grad_() for f in case.features()]
    pooler, rois = case.pooler(), case.rois()
    pooler(features, rois).sum().backward()
    levels = _reference_levels(case, rois)
    for level, feature in enumerate(features):
        for image in range(case.num_images):
            used = bool(((levels == level) & (rois[:, 0] == image)).any())
            # Boxes inside the image sample inside every map with positive weights, so a used
            # (level, image) gets a non-zero gradient and an unused one exactly zero.
            assert bool(feature.grad[image].any()) == used, (level, image)


@given(case=pooler_cases(dtypes=("float64",)), grad_seed=st.integers(0, 2**16))
def test_pooler_equals_the_reference_pooler(case, grad_seed):
    # The reference pooler shares no code with ours: each box's level from the float64 formula
    # (float64 cases on the 1/4 grid are never near a threshold), then reference.roi_align on
    # that level for that one box. Same float64 sample points; only summation order differs.
    features = [f.requires_grad_() for f in case.features()]
    boxes, rois = case.box_lists(), case.rois()
    _reference_levels(case, rois)
    reference_pooler = ref_pooler.Pooler(case.output_size, SCALES, case.sampling_ratio, case.aligned, case.dialect,
                                         **CANONICAL)
    gen = torch.Generator().manual_seed(grad_seed)
    grad_output = torch.randn((rois.shape[0], case.channels, case.output_size, case.output_size), generator=gen,
                              dtype=torch.float64)
    results = []
    for pooler in (case.pooler(), reference_pooler):
        out = pooler(features, boxes)
        results.append([out.detach()] + list(torch.autograd.grad(out, features, grad_output)))
    out_magnitude, feature_magnitudes, _ = ref_pooler.magnitudes(reference_pooler, features, boxes, grad_output)
    # Longest chains: an output bin sums 4 taps per sample; a feature pixel gathers every box's bins.
    samples = max(_max_samples_per_bin(case), 1)
    chain = 4 * samples * max(rois.shape[0], 1) * case.output_size**2 + 8
    bound = 2 * gamma(chain, unit_roundoff(torch.float64))
    names = ["output"] + [f"grad of level {i}" for i in range(len(SCALES))]
    for name, a, b, m in zip(names, *results, [out_magnitude] + feature_magnitudes):
        assert bool(((a - b).abs() <= bound * m).all()), name


class PerLevelPooler(Pooler):
    """Our pooler driven level by level: any swapped-in roi_align takes this path (as ``--roialign-target`` kernels do)."""

    @staticmethod
    def roi_align(*args):
        return impl.roi_align(*args)


@given(case=pooler_cases(), data=st.data())
def test_per_level_path_equals_the_one_pass_pooler(case, data):
    # A swapped-in kernel is called once per level and its rows put back in input order; with our
    # kernel swapped in, that must give the one-pass pooler's output and gradients bit for bit.
    features = [f.requires_grad_() for f in case.features()]
    rois = case.rois()
    rois = rois[list(data.draw(st.permutations(range(rois.shape[0]))))]
    one_pass, per_level = case.pooler(), PerLevelPooler(case.output_size, SCALES, case.sampling_ratio,
                                                        case.aligned, case.dialect, **CANONICAL)
    outputs = [pooler(features, rois) for pooler in (one_pass, per_level)]
    assert torch.equal(outputs[0], outputs[1])
    grad_output = torch.randn_like(outputs[0])
    grads = [torch.autograd.grad(out, features, grad_output) for out in outputs]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@given(case=pooler_cases(dtypes=FULL_PRECISION), grad_seed=st.integers(0, 2**16))
def test_gradient_of_each_level_equals_roi_align_gradient_of_its_boxes(case, grad_seed):
    # The pooler pools all levels in one kernel pass; each level's gradient must be, bit for bit,
    # what one roi_align call on that level's boxes gives: the same taps summed in the same order.
    features = [f.requires_grad_() for f in case.features()]
    pooler, rois = case.pooler(), case.rois()
    levels = pooler.levels(rois)
    gen = torch.Generator().manual_seed(grad_seed)
    grad_output = torch.randn((rois.shape[0], case.channels, case.output_size, case.output_size),
                              generator=gen, dtype=torch.float64).to(DTYPES[case.dtype])
    pooled_grads = torch.autograd.grad(pooler(features, rois), features, grad_output)
    for level, (feature, pooled_grad) in enumerate(zip(features, pooled_grads)):
        rows = levels == level
        alone = impl.roi_align(feature, rois[rows], case.output_size, SCALES[level], case.sampling_ratio,
                               case.aligned)
        (expected,) = torch.autograd.grad(alone, feature, grad_output[rows])
        assert torch.equal(pooled_grad, expected), level


# torchvision infers the scales from the image size, which for P5 takes an image >= 2.5 strides (80 px);
# its precondition is x1 < x2, y1 < y2 (a negative area gives it a NaN level and a row of zeros).
@given(case=pooler_cases(inside=True, dtypes=("float64",), dialects=("torchvision",), aligned=(False,),
                         sampling_ratios=(0, 2), image_sides=(80, 96)),
       representation=st.integers(1, 8))
def test_extractor_with_our_pooler_matches_torchvision_pooler(case, representation):
    torch.manual_seed(case.seed)
    ours = FPN2MLPFeatureExtractor(case.pooler(), case.channels, case.output_size, representation).double()
    theirs = copy.deepcopy(ours)
    theirs.pooler = TorchvisionPooler(case.output_size, case.sampling_ratio, scales=SCALES, **CANONICAL)
    features, boxes = case.features(), case.box_lists()
    grad_output = torch.randn(case.rois().shape[0], representation, dtype=torch.float64)
    results = []
    for head in (ours, theirs):
        inputs = [f.clone().requires_grad_() for f in features]
        head.zero_grad()
        out = head(inputs, boxes)
        out.backward(grad_output)
        results.append([out.detach()] + [x.grad for x in inputs] + [p.grad for p in head.parameters()])
    out_magnitude, feature_magnitudes, param_magnitudes = ref_pooler.magnitudes(ours, features, boxes, grad_output)
    magnitudes = [out_magnitude] + feature_magnitudes + list(param_magnitudes.values())
    # float64, same sample points: only summation order differs. Longest chains: a feature pixel
    # gathers every box's bins x samples x 4 taps; fc6, fc7 and their transposes; weight grads sum over boxes.
    samples = max(_max_samples_per_bin(case), 1)
    boxes_count = case.rois().shape[0]
    chain = 4 * samples * boxes_count * case.output_size**2 + case.channels * case.output_size**2 + 2 * representation + boxes_count + 2
    bound = 2 * gamma(chain, unit_roundoff(torch.float64))
    for name, a, b, m in zip(["output"] + [f"grad {i}" for i in range(len(magnitudes) - 1)], *results, magnitudes):
        assert bool(((a - b).abs() <= bound * m).all()), name


def _max_samples_per_bin(case: PoolerCase) -> int:
    if case.sampling_ratio > 0:
        return case.sampling_ratio**2
    # Adaptive: ceil(roi_size / output_size) per axis, roi_size <= the box side in feature pixels (<= image).
    side = max(case.image) * SCALES[0] + 2
    return math.ceil(side / case.output_size) ** 2


@given(case=pooler_cases(dtypes=FULL_PRECISION, image_sides=(8, 96)))
def test_pooler_paths_agree_bitwise(case):
    """The pooler gives the same bits whichever forward path each level takes: the cost model's mix
    (``auto``), every level gathered from NCHW, or every level converted to channels-last."""
    features, boxes = case.features(), case.box_lists()
    outs = {}
    for path in PATHS:
        with forward_path(path):
            outs[path] = case.pooler()(features, boxes)
    for path in ("gather", "convert"):
        assert torch.equal(outs["auto"], outs[path]), f"auto path and {path} path differ"

