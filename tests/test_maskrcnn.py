"""``impl.MultiScaleRoIAlign`` as a drop-in for ``torchvision.ops.MultiScaleRoIAlign``: alone, and in Mask R-CNN.

Bounds (``u`` the unit roundoff, ``gamma(n) = n u / (1 - n u)``, derivations
in ``properties/tolerances.py``):

* forward: a bin is ``sum_s w_s f_s / count`` over ``4 S`` bilinear taps with
  non-negative weights. Summing the same terms in any order errs by at most
  ``gamma(4 S + 8) * sum |w_s f_s|`` (the magnitude: the pooler run on
  ``|features|``); computing the sample coordinates with roundoff ``u``
  misplaces them by ``16 u (2 scale max|box| + 2)`` feature pixels, moving the
  bin by at most ``4 max|f|`` per pixel. Two implementations differ by the sum
  of their two bounds; in float64 ours and torchvision's compute the same
  coordinates, and our kernel sums in float64 and rounds once to the input dtype.
* backward: a map pixel gathers at most every tap of every RoI, ``m = 4 K S h w``
  terms ``g w / count``, so two orders differ by ``2 gamma(m + 8)`` times the
  magnitude, the backward of ``|grad_output|`` (weights are non-negative).

Mask R-CNN tests: float64, random weights, two ~200-px images. With those
images torchvision's default ``canonical_scale=224`` sends no box above P3,
so both models' poolers use ``canonical_scale=56`` (every level threshold /4):
boxes of 16-180 px then use P2-P5, which the tests check. The deep copy
differs from torchvision's model only in its two poolers.
"""
import copy
import math
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import Tensor

from roialign_suite import impl
from roialign_suite.benchmarks import maskrcnn
from roialign_suite.impl import multiscale
from roialign_suite.impl.levels import levels_for_boxes
from roialign_suite.impl.pooler import infer_scales
from roialign_suite.properties.tolerances import (
    BIN_ROUNDINGS,
    COORDINATE_ROUNDINGS,
    assert_within,
    gamma,
    unit_roundoff,
)
from roialign_suite.reference.pooler import torchvision_inferred_scales

NAMES = maskrcnn.FEATMAP_NAMES
STRIDES = (4, 8, 16, 32)
U64 = unit_roundoff(torch.float64)


def _padded(side: int) -> int:
    """A batch side as ``GeneralizedRCNNTransform`` pads it: to a multiple of 32."""
    return math.ceil(side / 32) * 32


def _pyramid(image_sizes, channels=4, dtype=torch.float64, seed=0) -> "OrderedDict[str, Tensor]":
    """FPN outputs of a batch of ``image_sizes``: P2..P5 (``"0"``..``"3"``) and ``"pool"``, as Mask R-CNN's."""
    gen = torch.Generator().manual_seed(seed)
    h, w = (_padded(max(size[i] for size in image_sizes)) for i in (0, 1))
    sizes = [(h // s, w // s) for s in STRIDES] + [(h // 64 + (h % 64 > 0), w // 64 + (w % 64 > 0))]
    return OrderedDict(
        (name, torch.randn(len(image_sizes), channels, *size, dtype=torch.float64, generator=gen).to(dtype))
        for name, size in zip(NAMES + ["pool"], sizes)
    )


def _boxes(image_sizes, count, dtype=torch.float64, seed=1, inside=False):
    """``count`` random boxes per image: ``sqrt(area)`` log-uniform over 4..900 px, any aspect in 1:3..3:1.

    ``inside``: within the image and at least 32 px a side (see the float32
    test); else centres reach 10% past the image, and each image gets a point
    and a box inverted along both axes.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for h, w in image_sizes:
        low, high = (32.0, min(h, w)) if inside else (4.0, 900.0)
        side = torch.exp(torch.empty(count, dtype=torch.float64).uniform_(math.log(low), math.log(high), generator=gen))
        aspect = torch.exp(torch.empty(count, dtype=torch.float64).uniform_(-math.log(3), math.log(3), generator=gen))
        bw, bh = side * aspect.sqrt(), side / aspect.sqrt()
        if inside:
            bw, bh = bw.clamp(32, w), bh.clamp(32, h)
            x1 = torch.rand(count, dtype=torch.float64, generator=gen) * (w - bw)
            y1 = torch.rand(count, dtype=torch.float64, generator=gen) * (h - bh)
        else:
            x1 = torch.rand(count, dtype=torch.float64, generator=gen) * 1.2 * w - 0.1 * w - bw / 2
            y1 = torch.rand(count, dtype=torch.float64, generator=gen) * 1.2 * h - 0.1 * h - bh / 2
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1)
        if not inside:
            boxes = torch.cat([boxes, torch.tensor([[30.0, 40.0, 30.0, 40.0], [90.0, 80.0, 20.0, 10.0]])])
        out.append(boxes.to(dtype))
    return out


def _levels(boxes, canonical_scale=224) -> Tensor:
    return levels_for_boxes(torch.cat(boxes).double(), 2, 5, canonical_scale, 4, dialect="torchvision")


def _pool(module, x, boxes, image_sizes, abs_features=False):
    return module(OrderedDict((k, v.abs() if abs_features else v) for k, v in x.items()), boxes, image_sizes)


def _scales_and_samples(boxes, output_size, sampling_ratio, canonical_scale=224):
    """Per RoI, its level's scale and its samples per bin (``grid_h * grid_w``)."""
    rois = torch.cat(boxes).double()
    scale = torch.tensor([1.0 / s for s in STRIDES], dtype=torch.float64)[_levels(boxes, canonical_scale)]
    if sampling_ratio > 0:
        return scale, torch.full_like(scale, float(sampling_ratio**2))
    sides = ((rois[:, 2:] - rois[:, :2]).abs() * scale[:, None]).clamp(min=1.0)  # (w, h) in map pixels
    return scale, torch.ceil(sides[:, 0] / output_size) * torch.ceil(sides[:, 1] / output_size)


def _forward_bound(x, boxes, image_sizes, output_size, sampling_ratio, dtype, canonical_scale=224) -> Tensor:
    """Per output element, the most ours and torchvision's may differ (module docstring)."""
    tv = torchvision.ops.MultiScaleRoIAlign(NAMES, output_size, sampling_ratio, canonical_scale=canonical_scale)
    value = _pool(tv, x, boxes, image_sizes).double()
    magnitude = _pool(tv, x, boxes, image_sizes, abs_features=True).double()
    scale, samples = _scales_and_samples(boxes, output_size, sampling_ratio, canonical_scale)
    terms = (4 * samples + BIN_ROUNDINGS).reshape(-1, 1, 1, 1)
    u = unit_roundoff(dtype)
    summation = (gamma(terms, u) + gamma(terms, U64)) * magnitude + u * value.abs()
    max_f = max(float(v.abs().max()) for k, v in x.items() if k in NAMES)
    reach = (2 * scale * torch.cat(boxes).double().abs().amax(dim=1) + 2) * COORDINATE_ROUNDINGS
    coordinates = 4 * max_f * reach.reshape(-1, 1, 1, 1) * (u + U64)
    return summation + coordinates


IMAGES = [(480, 600), (448, 640)]


# --- the module against torchvision's --------------------------------------------------------------

@pytest.mark.parametrize("output_size, sampling_ratio", [(7, 2), (14, 2), (5, 0)])
def test_float64_output_and_gradients_equal_torchvision_to_rounding(output_size, sampling_ratio):
    x = _pyramid(IMAGES)
    boxes = _boxes(IMAGES, 40)
    assert torch.bincount(_levels(boxes), minlength=4).min() >= 5, "every level must pool several boxes"
    ours = impl.MultiScaleRoIAlign(NAMES, output_size, sampling_ratio)
    tv = torchvision.ops.MultiScaleRoIAlign(NAMES, output_size, sampling_ratio)
    leaves = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    out = _pool(ours, leaves, boxes, IMAGES)
    expected = _pool(tv, x, boxes, IMAGES)
    assert_within(out, expected, _forward_bound(x, boxes, IMAGES, output_size, sampling_ratio, torch.float64),
                  "MultiScaleRoIAlign float64")

    grad_output = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad(out, [leaves[k] for k in NAMES], grad_output)
    tv_leaves = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
    tv_grads = torch.autograd.grad(_pool(tv, tv_leaves, boxes, IMAGES), [tv_leaves[k] for k in NAMES], grad_output)
    magnitudes = torch.autograd.grad(_pool(tv, tv_leaves, boxes, IMAGES), [tv_leaves[k] for k in NAMES],
                                     grad_output.abs())
    _, samples = _scales_and_samples(boxes, output_size, sampling_ratio)
    terms = 4 * float(samples.sum()) * output_size**2 + BIN_ROUNDINGS
    for name, grad, tv_grad, magnitude in zip(NAMES, grads, tv_grads, magnitudes):
        assert_within(grad, tv_grad, 2 * gamma(terms, U64) * magnitude, f"gradient of level {name}")


def test_float32_output_equals_torchvision_within_the_derived_bound():
    # torchvision computes float32 sample coordinates, which may round across a
    # map edge where RoIAlign jumps; boxes inside the image and >= 32 px a side
    # (>= 1 map pixel on P5) keep every sample >= 1/28 pixel inside the map. Such
    # boxes reach P5 (sqrt(area) >= 2 s0) with s0 = 112, not with 224.
    x = _pyramid(IMAGES, dtype=torch.float32)
    boxes = _boxes(IMAGES, 40, dtype=torch.float32, inside=True)
    assert torch.bincount(_levels(boxes, 112), minlength=4).min() >= 3
    out = _pool(impl.MultiScaleRoIAlign(NAMES, 7, 2, canonical_scale=112), x, boxes, IMAGES)
    expected = _pool(torchvision.ops.MultiScaleRoIAlign(NAMES, 7, 2, canonical_scale=112), x, boxes, IMAGES)
    assert out.dtype == torch.float32
    assert_within(out, expected.double(), _forward_bound(x, boxes, IMAGES, 7, 2, torch.float32, 112),
                  "MultiScaleRoIAlign float32")


def test_levels_are_those_of_x_named_in_featmap_names_in_x_order():
    x = _pyramid(IMAGES)
    boxes = _boxes(IMAGES, 10)
    # An unnamed map between the levels, and featmap_names in another order than x's.
    extra = OrderedDict(list(x.items())[:2] + [("other", torch.zeros(2, 4, 3, 3, dtype=torch.float64))] + list(x.items())[2:])
    for names in (["3", "2", "1", "0"], ["1", "3", "0", "2"]):
        expected = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)(extra, boxes, IMAGES)
        assert torch.equal(impl.MultiScaleRoIAlign(names, 7, 2)(extra, boxes, IMAGES), expected)


def test_boxes_just_under_a_level_threshold_go_up_as_torchvisions_eps_sends_them():
    # sqrt(area) = s0 2^j (1 - 3e-7): log2 falls 4.3e-7 short of the threshold, which
    # torchvision's eps (1e-6, added after the log) makes up; eps inside the log does not.
    x = _pyramid(IMAGES)
    sides = [side * (1 - 3e-7) for side in (112.0, 224.0, 448.0)] + [112.0, 224.0, 448.0]
    boxes = [torch.tensor([[10.0, 20.0, 10.0 + s, 20.0 + s] for s in sides], dtype=torch.float64), x["0"].new_zeros(0, 4)]
    theirs = _levels(boxes)
    assert theirs.tolist() == [1, 2, 3, 1, 2, 3]
    assert not torch.equal(levels_for_boxes(boxes[0], 2, 5, dialect="detectron2"), theirs)
    expected = torchvision.ops.MultiScaleRoIAlign(NAMES, 7, 2)(x, boxes, IMAGES)
    assert torch.equal(impl.MultiScaleRoIAlign(NAMES, 7, 2)(x, boxes, IMAGES), expected)


def test_single_level_and_empty_images_as_torchvision():
    x = _pyramid(IMAGES)
    boxes = _boxes(IMAGES, 6)
    single = (impl.MultiScaleRoIAlign(["2"], 7, 2), torchvision.ops.MultiScaleRoIAlign(["2"], 7, 2))
    assert torch.equal(single[0](x, boxes, IMAGES), single[1](x, boxes, IMAGES))
    ours, tv = impl.MultiScaleRoIAlign(NAMES, 7, 2), torchvision.ops.MultiScaleRoIAlign(NAMES, 7, 2)
    for some_empty in ([boxes[0], boxes[1][:0]], [boxes[0][:0], boxes[1][:0]]):
        leaves = OrderedDict((k, v.clone().requires_grad_()) for k, v in x.items())
        out = ours(leaves, some_empty, IMAGES)
        assert out.shape == (sum(len(b) for b in some_empty), 4, 7, 7)
        assert torch.equal(out, tv(x, some_empty, IMAGES))
        out.sum().backward()
        assert leaves["0"].grad is not None and leaves["pool"].grad is None


# --- scales ------------------------------------------------------------------------------------------

def test_scales_are_torchvisions_on_every_mask_rcnn_batch_side_up_to_1400():
    """The batch is padded to 32, so map ``l`` is ``ceil(side / 32) * 32 / stride_l``; torchvision reads
    the height, ours both sides. On each side both infer torchvision's scales; for sides >= 68 px
    they are ``1 / stride``; below, padding can round the ratio to the wrong power of two."""
    wrong = []
    for side in range(1, 1401):
        feature_sizes = [(_padded(side) // s,) * 2 for s in STRIDES]
        theirs = torchvision_inferred_scales(feature_sizes, [(side, side)])
        assert list(infer_scales(feature_sizes, [(side, side)])) == theirs, side
        if theirs != [1.0 / s for s in STRIDES]:
            wrong.append(side)
    assert wrong and max(wrong) == 67, wrong


def test_scales_inconsistent_between_height_and_width_are_rejected():
    # An 800x40 batch pads to 800x64: the width reads scale 1/2 on P2, torchvision
    # (height) 1/4. Ours raises instead of pooling with a scale wrong for one axis.
    x = _pyramid([(800, 40)])
    with pytest.raises(ValueError, match="from the height but"):
        impl.MultiScaleRoIAlign(NAMES, 7, 2)(x, [torch.zeros(1, 4, dtype=torch.float64)], [(800, 40)])


# --- arguments ------------------------------------------------------------------------------------

def _bad_calls():
    x = _pyramid(IMAGES)
    boxes = _boxes(IMAGES, 3)
    nan = [boxes[0], torch.cat([boxes[1], torch.tensor([[0.0, float("nan"), 1.0, 1.0]], dtype=torch.float64)])]
    skipping = OrderedDict((k, x[k]) for k in ("0", "2", "3"))
    return [
        (dict(x=OrderedDict((k, v) for k, v in x.items() if k != "2")), ValueError, r"no feature map named \['2'\]"),
        (dict(x=list(x.values())), TypeError, "x must be a dict"),
        (dict(image_shapes=IMAGES[:1]), ValueError, "image_shapes has 1 entries for 2 images"),
        (dict(image_shapes=IMAGES + IMAGES), ValueError, "image_shapes has 4 entries for 2 images"),
        (dict(image_shapes=[(480, 0), IMAGES[1]]), ValueError, r"image_sizes\[0\] must be a positive"),
        (dict(boxes=torch.cat(boxes)), TypeError, "boxes must be a list with one entry per image"),
        (dict(boxes=boxes[:1]), ValueError, "boxes has 1 entries for 2 images"),
        (dict(boxes=[boxes[0], boxes[1].tolist()]), TypeError, r"boxes\[1\] must be a torch.Tensor"),
        (dict(boxes=[boxes[0], torch.zeros(3, 5, dtype=torch.float64)]), ValueError, r"boxes\[1\] must have shape \[K, 4\]"),
        (dict(boxes=[boxes[0], boxes[1].float()]), TypeError, r"boxes\[1\] dtype torch.float32 does not match"),
        (dict(boxes=nan), ValueError, r"boxlists\[1\] row 5 has non-finite values"),
        (dict(x=OrderedDict(x, **{"3": x["3"][:, :2]})), ValueError, r"features\['3'\] .* does not match"),
        (dict(x=skipping, names=["0", "2", "3"]), ValueError, "do not form a pyramid"),
    ]


@pytest.mark.parametrize("change, error, message", _bad_calls())
def test_bad_input_raises_a_clear_error(change, error, message):
    x = _pyramid(IMAGES)
    args = dict(x=x, boxes=_boxes(IMAGES, 3), image_shapes=IMAGES, names=NAMES)
    args.update(change)
    with pytest.raises(error, match=message):
        impl.MultiScaleRoIAlign(args["names"], 7, 2)(args["x"], args["boxes"], args["image_shapes"])


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        (("0", 7, 2), {}, TypeError),
        (([], 7, 2), {}, TypeError),
        (([0, 1], 7, 2), {}, TypeError),
        ((NAMES, 0, 2), {}, ValueError),
        ((NAMES, 7, 2.0), {}, TypeError),
        ((NAMES, 7, 2), {"canonical_scale": 0}, ValueError),
        ((NAMES, 7, 2), {"canonical_level": 4.5}, TypeError),
    ],
)
def test_bad_constructor_arguments(args, kwargs, error):
    with pytest.raises(error):
        impl.MultiScaleRoIAlign(*args, **kwargs)


def test_constructor_and_repr_as_torchvision():
    ours = impl.MultiScaleRoIAlign(NAMES, (7, 5), 2, canonical_scale=56, canonical_level=3)
    theirs = torchvision.ops.MultiScaleRoIAlign(NAMES, (7, 5), 2, canonical_scale=56, canonical_level=3)
    for attribute in ("featmap_names", "output_size", "sampling_ratio", "canonical_scale", "canonical_level"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert repr(ours) == repr(theirs)
    assert impl.MultiScaleRoIAlign is multiscale.MultiScaleRoIAlign


def test_forward_traces_whole_with_torch_compile():
    """No Python branch on tensor values: dynamo captures the forward, operators included, in one graph."""
    x = _pyramid(IMAGES)
    boxes = _boxes(IMAGES, 8)
    module = impl.MultiScaleRoIAlign(NAMES, 7, 2)
    torch._dynamo.reset()
    try:
        out = torch.compile(module, fullgraph=True, backend="eager")(x, boxes, IMAGES)
    finally:
        torch._dynamo.reset()
    assert torch.equal(out, module(x, boxes, IMAGES))


# --- inside torchvision's Mask R-CNN -------------------------------------------------------------

MODEL_IMAGES = [(192, 224), (224, 192)]
CANONICAL_SCALE = 56
MODEL_KWARGS = dict(
    num_classes=5, min_size=192, max_size=224,  # images are not resized
    rpn_pre_nms_top_n_train=500, rpn_post_nms_top_n_train=250, box_batch_size_per_image=128,
    rpn_pre_nms_top_n_test=250, rpn_post_nms_top_n_test=125, box_detections_per_img=10,
    box_score_thresh=0.0,  # random weights score every class ~1/5 < 0.05: keep detections non-empty
)


class Recorder:
    """Captures each pooler call (inputs, output, output gradient) and the FPN outputs' gradients."""

    def __init__(self, model):
        self.calls = {"box": [], "mask": []}
        self.fpn_grads = {}
        model.roi_heads.box_roi_pool.register_forward_hook(self._pooled("box"))
        model.roi_heads.mask_roi_pool.register_forward_hook(self._pooled("mask"))
        model.backbone.fpn.register_forward_hook(self._fpn)

    def clear(self):
        self.calls = {"box": [], "mask": []}
        self.fpn_grads = {}

    def _pooled(self, kind):
        def hook(module, args, output):
            call = {"x": {k: args[0][k].detach() for k in NAMES}, "boxes": [b.detach() for b in args[1]],
                    "image_shapes": list(args[2]), "out": output.detach()}
            if output.requires_grad:
                output.register_hook(lambda grad: call.__setitem__("grad", grad))
            self.calls[kind].append(call)

        return hook

    def _fpn(self, module, args, output):
        for name, value in output.items():
            if value.requires_grad:
                value.register_hook(lambda grad, name=name: self.fpn_grads.__setitem__(name, grad))


@pytest.fixture(scope="module")
def models():
    theirs = maskrcnn.use_poolers(maskrcnn.maskrcnn(torch.float64, **MODEL_KWARGS), "torchvision-cpu", CANONICAL_SCALE)
    ours = maskrcnn.use_poolers(copy.deepcopy(theirs), "numba", CANONICAL_SCALE)
    assert isinstance(ours.roi_heads.box_roi_pool, impl.MultiScaleRoIAlign)
    assert isinstance(ours.roi_heads.mask_roi_pool, impl.MultiScaleRoIAlign)
    images, targets = maskrcnn.synthetic_batch(MODEL_IMAGES, objects=6, num_classes=5, dtype=torch.float64, seed=3)
    return {"torchvision": (theirs, Recorder(theirs)), "ours": (ours, Recorder(ours)), "batch": (images, targets)}


@pytest.fixture(scope="module")
def train_runs(models):
    images, targets = models["batch"]
    runs = {}
    for name in ("torchvision", "ours"):
        model, recorder = models[name]
        recorder.clear()
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the RPN and box samplers draw the same RoIs in both runs
        losses = model(images, targets)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs[name] = {"losses": {k: v.detach() for k, v in losses.items()}, "grads": grads,
                      "calls": recorder.calls, "fpn_grads": recorder.fpn_grads}
    return runs["torchvision"], runs["ours"]


@pytest.fixture(scope="module")
def eval_runs(models):
    images, _ = models["batch"]
    runs = []
    for name in ("torchvision", "ours"):
        model, recorder = models[name]
        recorder.clear()
        model.eval()
        with torch.no_grad():
            runs.append({"detections": model(images), "calls": recorder.calls})
    return runs


def _assert_pooled_bitwise_equal(theirs, ours, canonical_scale=CANONICAL_SCALE):
    # Our float64 kernel evaluates torchvision's expression for each bin in
    # torchvision's order (sample coordinates, the four weights w1..w4, the
    # four-term sum, samples in iy-then-ix order, one division by count), so its
    # outputs are the same doubles; everything downstream is the same code on
    # the same values, which makes the losses and detections equal bit for bit.
    for kind in ("box", "mask"):
        assert len(theirs[kind]) == len(ours[kind]) == 1, kind
        a, b = theirs[kind][0], ours[kind][0]
        assert all(torch.equal(p, q) for p, q in zip(a["boxes"], b["boxes"])), f"{kind} pooler got other boxes"
        assert a["out"].shape[0] > 0, f"{kind} pooler pooled nothing"
        assert torch.equal(a["out"], b["out"]), f"{kind} pooler outputs differ: max {(a['out'] - b['out']).abs().max()}"
    levels = torch.bincount(_levels(theirs["box"][0]["boxes"], canonical_scale), minlength=4)
    assert bool((levels > 0).all()), f"box RoIs per level P2..P5: {levels.tolist()}"


def test_train_losses_equal_torchvision(train_runs):
    theirs, ours = train_runs
    _assert_pooled_bitwise_equal(theirs["calls"], ours["calls"])
    assert theirs["losses"].keys() == ours["losses"].keys()
    for name, loss in theirs["losses"].items():
        assert torch.equal(loss, ours["losses"][name]), name  # bitwise: see _assert_pooled_bitwise_equal


def _pooler_gradient_magnitude(call, kind) -> list:
    """torchvision's pooler backward of ``|grad|``: per level, the sum of |terms| of each map pixel."""
    leaves = OrderedDict((k, v.clone().requires_grad_()) for k, v in call["x"].items())
    output_size, sampling_ratio = maskrcnn.POOLER_ARGS[kind]
    tv = torchvision.ops.MultiScaleRoIAlign(NAMES, output_size, sampling_ratio, canonical_scale=CANONICAL_SCALE)
    out = tv(leaves, call["boxes"], call["image_shapes"])
    return list(torch.autograd.grad(out, list(leaves.values()), call["grad"].abs()))


def _source_bound(call, kind) -> float:
    """``2 gamma(m)`` of a pooler's backward: ``m`` every tap of every RoI, plus the per-bin roundings."""
    output_size, sampling_ratio = maskrcnn.POOLER_ARGS[kind]
    return 2 * gamma(4 * call["out"].shape[0] * sampling_ratio**2 * output_size**2 + BIN_ROUNDINGS, U64)


def test_train_fpn_output_gradients_equal_torchvision_to_rounding(train_runs):
    """Where the two models first differ: the poolers' backward sums the same terms in other orders.

    Each FPN map's gradient is the poolers' (box, mask) plus the RPN head's (and
    P6's for P5), accumulated in some order: per run within ``gamma(3)`` of the sum
    of their absolute values, ``<= |G| + 2 (T_box + T_mask)``. So
    ``|G_ours - G_tv| <= 2 gamma(m_box) T_box + 2 gamma(m_mask) T_mask + 2 gamma(3) (|G| + 2 T_box + 2 T_mask)``.
    """
    theirs, ours = train_runs
    magnitudes = {kind: _pooler_gradient_magnitude(theirs["calls"][kind][0], kind) for kind in ("box", "mask")}
    sources = {kind: _source_bound(theirs["calls"][kind][0], kind) for kind in ("box", "mask")}
    for level, name in enumerate(NAMES):
        t_box, t_mask = magnitudes["box"][level], magnitudes["mask"][level]
        g = theirs["fpn_grads"][name]
        bound = sources["box"] * t_box + sources["mask"] * t_mask + 2 * gamma(3, U64) * (g.abs() + 2 * t_box + 2 * t_mask)
        assert_within(ours["fpn_grads"][name], g, bound, f"gradient of FPN output {name}")


def test_train_parameter_gradients_equal_torchvision(models, train_runs):
    """The heads' and the RPN's gradients equal torchvision's bitwise; the backbone's and FPN's to rounding.

    roi_heads and rpn parameters see only the forward (bitwise equal) and the
    losses: their gradients are the same doubles. Every backbone and FPN
    gradient is a linear image (the backbone's backward) of the FPN outputs'
    gradients, whose only difference is the poolers' backward, relative
    ``rho = 2 gamma(m)`` of its magnitude at most (previous test). That relative
    difference is carried to each parameter tensor, measured against its
    largest entry: ``max|g_ours - g_tv| <= rho * max|g_tv|``. It is a
    first-order bound with gain 1: a worst-case bound through ResNet-50's backward
    grows with the product of the layers' fan-ins and excludes nothing.
    """
    theirs, ours = train_runs
    assert theirs["grads"].keys() == ours["grads"].keys()
    assert list(theirs["grads"]) == [n for n, p in models["torchvision"][0].named_parameters() if p.requires_grad]
    rho = max(_source_bound(theirs["calls"][kind][0], kind) for kind in ("box", "mask")) + 2 * gamma(3, U64)
    upstream = [n for n in theirs["grads"] if n.startswith("backbone.")]
    assert len(upstream) > 150
    for name, grad in theirs["grads"].items():
        if name.startswith(("roi_heads.", "rpn.")):
            assert torch.equal(grad, ours["grads"][name]), name
            continue
        assert name in upstream, name
        error = float((ours["grads"][name] - grad).abs().max())
        assert error <= rho * float(grad.abs().max()), f"{name}: error {error:.3g} > {rho:.3g} * max|grad|"


def test_eval_detections_equal_torchvision(eval_runs):
    theirs, ours = eval_runs
    _assert_pooled_bitwise_equal(theirs["calls"], ours["calls"])
    for image, (a, b) in enumerate(zip(theirs["detections"], ours["detections"])):
        assert len(a["boxes"]) == MODEL_KWARGS["box_detections_per_img"], image
        assert a.keys() == b.keys() == {"boxes", "labels", "scores", "masks"}
        for key in a:
            assert torch.equal(a[key], b[key]), f"image {image}: {key}"  # bitwise: see _assert_pooled_bitwise_equal
