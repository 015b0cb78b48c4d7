"""``impl.MultiScaleRoIAlign`` as a drop-in where torchvision's pooler goes: TorchScript, ``torch.compile``, ``torch.fx``.

Every comparison is exact: the scripted, compiled (``backend="eager"``: dynamo's
capture, our kernels) and fx-traced modules run the same operators on the same
values as the eager module, so any difference is a capture bug, not roundoff.
Feature pyramids are Mask R-CNN's: the batch padded to a multiple of 32, P2..P5
at strides 4..32.
"""
import math
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch._dynamo.testing import CompileCounter

from roialign_suite import impl
from roialign_suite.benchmarks import maskrcnn

NAMES = maskrcnn.FEATMAP_NAMES
STRIDES = (4, 8, 16, 32)

# Batches of image (h, w) in the order they are pooled: image sizes change at batch size 1
# (dynamo turns on dynamic shapes at the second size), batch sizes 2 and 3 come in between, and
# the two batches of 2 take their largest height and largest width from different images.
BATCHES = [
    [(200, 240)],
    [(256, 320)],
    [(300, 200), (280, 250)],
    [(160, 416)],
    [(224, 224), (200, 180), (240, 300)],
    [(250, 300), (290, 220)],
    [(320, 288)],
]
# 800x40 pads to 800x64: P2 is 200x16, scale 1/4 by the height but 1/2 by the width.
DISAGREEING = [(800, 40)]


def _batch(image_sizes, seed, channels=2):
    """``(x, boxes, image_shapes)`` for a Mask R-CNN batch of ``image_sizes``: random maps, 5+ boxes per image."""
    gen = torch.Generator().manual_seed(seed)
    h, w = (math.ceil(max(size[i] for size in image_sizes) / 32) * 32 for i in (0, 1))
    x = OrderedDict(
        (name, torch.randn(len(image_sizes), channels, h // stride, w // stride, generator=gen))
        for name, stride in zip(NAMES, STRIDES)
    )
    boxes = []
    for i, (image_h, image_w) in enumerate(image_sizes):
        size = torch.tensor([image_w, image_h], dtype=torch.float32)
        corner = torch.rand(5 + i, 2, generator=gen) * size * 0.7
        boxes.append(torch.cat([corner, corner + 8 + torch.rand(5 + i, 2, generator=gen) * size * 0.3], dim=1))
    return x, boxes, list(image_sizes)


def _compiled_outputs_equal_eager(module, batches, dynamic):
    """Pools ``batches`` with ``torch.compile(module, fullgraph=True)``; returns the graphs compiled so far
    after each batch."""
    counter = CompileCounter()
    graphs = []
    torch._dynamo.reset()
    try:
        compiled = torch.compile(module, fullgraph=True, backend=counter, dynamic=dynamic)
        for seed, image_sizes in enumerate(batches):
            x, boxes, image_shapes = _batch(image_sizes, seed)
            out = compiled(x, boxes, image_shapes)
            assert torch.equal(out, module(x, boxes, image_shapes)), image_sizes
            graphs.append(counter.frame_count)
    finally:
        torch._dynamo.reset()
    return graphs


def test_compiled_at_changing_sizes_equals_eager_with_no_more_recompiles_than_torchvision():
    """Until a batch size of 2 or more comes back with other image sizes, ours compiles no more graphs than
    torchvision's. Then ours recompiles once more (once per such batch size): dynamo first sees the ints
    of image_shapes[1:] in that batch size's graph and specializes them; we read them on every call (the
    scale check), torchvision only on its first. The next graph has them dynamic."""
    ours = _compiled_outputs_equal_eager(impl.MultiScaleRoIAlign(NAMES, 7, 2), BATCHES, dynamic=None)
    theirs = _compiled_outputs_equal_eager(torchvision.ops.MultiScaleRoIAlign(NAMES, 7, 2), BATCHES, dynamic=None)
    sizes_by_count = {}
    for i, image_sizes in enumerate(BATCHES):
        sizes_by_count.setdefault(len(image_sizes), set()).add(tuple(image_sizes))
        revisited = sum(1 for count, seen in sizes_by_count.items() if count > 1 and len(seen) > 1)
        assert ours[i] <= theirs[i] + revisited, (BATCHES[: i + 1], ours, theirs)


def test_compiled_dynamic_from_the_start_equals_eager_and_still_rejects_disagreeing_scales():
    """torchvision's pooler fails here (its fake kernel); ours compiles one graph per batch size (dynamo
    keeps list lengths static) and every image size after the first reuses it."""
    module = impl.MultiScaleRoIAlign(NAMES, 7, 2)
    graphs = _compiled_outputs_equal_eager(module, BATCHES, dynamic=True)
    assert graphs[-1] <= len({len(image_sizes) for image_sizes in BATCHES}), graphs
    # The scales are guards on sizes: a batch whose height and width disagree re-traces and raises
    # (under fullgraph=True dynamo reports our ValueError as an uncaught exception, message included).
    torch._dynamo.reset()
    try:
        compiled = torch.compile(module, fullgraph=True, backend="eager", dynamic=True)
        compiled(*_batch(BATCHES[0], 0))
        with pytest.raises(Exception, match="from the height but"):
            compiled(*_batch(DISAGREEING, 1))
    finally:
        torch._dynamo.reset()


def test_fx_symbolic_trace_keeps_the_pooler_one_leaf_call_equal_to_eager():
    module = impl.MultiScaleRoIAlign(NAMES, 7, 2)
    traced = torch.fx.symbolic_trace(module)
    calls = [node for node in traced.graph.nodes if node.op == "call_function"]
    assert len(calls) == 1, traced.code
    for seed, image_sizes in enumerate(BATCHES[1:3]):
        x, boxes, image_shapes = _batch(image_sizes, seed)
        assert torch.equal(traced(x, boxes, image_shapes), module(x, boxes, image_shapes)), image_sizes
    with pytest.raises(ValueError, match="from the height but"):
        traced(*_batch(DISAGREEING, 1))


def test_scripted_pooler_equals_eager_and_rejects_disagreeing_scales():
    module = impl.MultiScaleRoIAlign(NAMES, 14, 2)
    scripted = torch.jit.script(module)
    for seed, image_sizes in enumerate(BATCHES[2:5]):
        x, boxes, image_shapes = _batch(image_sizes, seed)
        assert torch.equal(scripted(x, boxes, image_shapes), module(x, boxes, image_shapes)), image_sizes
    with pytest.raises(torch.jit.Error, match="from the height but"):
        scripted(*_batch(DISAGREEING, 1))


def test_scripted_mask_rcnn_with_our_poolers_equals_eager():
    """torchvision's Mask R-CNN (random weights, float32, eval) with both poolers ours, scripted whole."""
    kwargs = dict(num_classes=3, min_size=160, max_size=192, rpn_pre_nms_top_n_test=100,
                  rpn_post_nms_top_n_test=50, box_detections_per_img=8, box_score_thresh=0.0)
    model = maskrcnn.use_poolers(maskrcnn.maskrcnn(torch.float32, **kwargs), "numba", canonical_scale=56).eval()
    assert isinstance(model.roi_heads.box_roi_pool, impl.MultiScaleRoIAlign)
    assert isinstance(model.roi_heads.mask_roi_pool, impl.MultiScaleRoIAlign)
    scripted = torch.jit.script(model)
    for pooler in (scripted.roi_heads.box_roi_pool, scripted.roi_heads.mask_roi_pool):
        assert "roialign_suite::multilevel_roi_align" in str(pooler.forward.inlined_graph)
    images, _ = maskrcnn.synthetic_batch([(160, 192), (176, 160)], objects=2, num_classes=3, dtype=torch.float32)
    with torch.no_grad():
        expected = model(images)
        _, detections = scripted(images)  # scripted detection models return (losses, detections)
    assert len(detections) == len(expected) == 2
    for ours, theirs in zip(detections, expected):
        assert ours.keys() == theirs.keys()
        assert theirs["boxes"].shape[0] > 0 and theirs["masks"].shape[0] > 0
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key
