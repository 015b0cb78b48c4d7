"""Our operators under ``torch.compile`` (Dynamo + Inductor on the CPU) and ``torch.export``.

Five targets: ``impl.roi_align``, ``impl.RoIAlign``, ``impl.Pooler``
(``fpn_box_head_pooler``), ``impl.FPN2MLPFeatureExtractor`` and
``impl.LevelMapper``. Each traces as one graph with no break; compiled
(static, and ``dynamic=True`` reused for another RoI count without a
recompile) it equals eager bitwise, forward and backward. The one
exception is the extractor's fc parameter gradients, for which Inductor
calls its own matmul and sum (see :func:`_fc_parameter_bounds`). The data
checks still raise their ``ValueError`` from a compiled graph, at run time.

Kept cheap: small shapes, one compiled graph per test (two where the RoI
count changes); only the pooler, extractor and mapper graphs hold C++
kernels. With a cold Inductor cache on 2 cores the file takes about a
minute, a third of it the process's first C++ build and the fresh process.
"""
import textwrap

import pytest
import torch
from torch.export import Dim

from fresh_process import run_python
from roialign_suite import impl
from roialign_suite.impl.roi_align import multilevel_roi_align
from roialign_suite.properties.tolerances import gamma, unit_roundoff

OPS = torch.ops.roialign_suite
CHANNELS = 4
# P2-P5 of a 512 x 640 image; box sides 20-500 pixels spread the RoIs over all four levels.
PYRAMID_SHAPES = [(2, CHANNELS, 128 >> i, 160 >> i) for i in range(4)]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _pyramid(dtype=torch.float32, grad=True):
    maps = [torch.randn(shape, dtype=dtype, generator=_generator(i)) for i, shape in enumerate(PYRAMID_SHAPES)]
    maps[1] = maps[1].contiguous(memory_format=torch.channels_last)
    return [m.requires_grad_(grad) for m in maps]


def _boxes(count, seed, dtype=torch.float32):
    """``count`` boxes in a 512 x 640 image, sides 20-500 pixels."""
    gen = _generator(100 + seed)
    corner = torch.rand(count, 2, dtype=dtype, generator=gen) * 400
    side = 20 + torch.rand(count, 2, dtype=dtype, generator=gen) * 480
    return torch.cat([corner, corner + side], dim=1)


def _rois(count, seed, dtype=torch.float32):
    index = torch.arange(count, dtype=dtype).remainder(2)[:, None]
    return torch.cat([index, _boxes(count, seed, dtype) / 8], dim=1)


def _extractor():
    torch.manual_seed(0)
    extractor = impl.FPN2MLPFeatureExtractor(impl.fpn_box_head_pooler(), CHANNELS, 7, 32)
    with torch.no_grad():  # non-zero biases, so their addition is part of what is compared
        extractor.fc6.bias.uniform_(-1, 1)
        extractor.fc7.bias.uniform_(-1, 1)
    return extractor


def _target(name, grad):
    """``(callable, inputs for two RoI counts, differentiable leaves)`` of one compile target.

    The first RoI counts differ from every other size in the inputs (2, 4, 5, the map sides):
    Dynamo gives equal sizes one symbol ("duck sizing"), so a count equal to the box columns
    would be specialised by the front end's shape check and the second count recompile.
    """
    if name in ("roi_align", "RoIAlign"):
        x = torch.randn(2, CHANNELS, 20, 24, generator=_generator(0)).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(grad)
        if name == "roi_align":
            fn = lambda x, rois: impl.roi_align(x, rois, (3, 2), 0.5, 2, True)  # noqa: E731
        else:
            fn = impl.RoIAlign((2, 3), 0.5, 0, False)
        return fn, [(x, _rois(6, 1)), (x, _rois(9, 2))], [x]
    if name == "LevelMapper":
        mapper = impl.LevelMapper(2, 5)
        return (lambda a, b: mapper([a, b])), [(_boxes(3, 1), _boxes(6, 2)), (_boxes(7, 3), _boxes(9, 4))], []
    pyramid = _pyramid(grad=grad)
    fn = impl.fpn_box_head_pooler() if name == "Pooler" else _extractor()
    leaves = pyramid + (list(fn.parameters()) if grad else [])
    return fn, [(pyramid, [_boxes(3, 1), _boxes(6, 2)]), (pyramid, [_boxes(7, 3), _boxes(9, 4)])], leaves


TARGETS = ["roi_align", "RoIAlign", "Pooler", "FPN2MLPFeatureExtractor", "LevelMapper"]


@pytest.mark.parametrize("name", TARGETS)
def test_one_graph_without_breaks(name):
    """``torch._dynamo.explain``: one graph, zero graph breaks."""
    fn, inputs, _ = _target(name, grad=True)
    explanation = torch._dynamo.explain(fn)(*inputs[0])
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


@pytest.mark.parametrize("name", TARGETS)
def test_compiled_forward_equals_eager(name):
    """``torch.compile(fullgraph=True)``, static shapes, inference (no grad): bitwise eager."""
    fn, inputs, _ = _target(name, grad=False)
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)
    assert torch.equal(compiled(*inputs[0]), fn(*inputs[0]))


def _fc_parameter_bounds(extractor, inputs, weight):
    """Bounds on |compiled - eager| for the fc weight and bias gradients.

    The compiled graph computes ``W.grad`` as ``mm(g.T, a)`` where eager's
    addmm backward takes ``mm(a.T, g).T``, and ``b.grad`` with Inductor's own
    sum over K: each entry is a K-term dot product or sum, so each side is
    within ``gamma(K) * sum_k |g_k a_k|`` (``gamma(K - 1) * sum_k |g_k|``) of
    the exact value and the two differ by at most twice that. ``g`` is the
    gradient at fc6/fc7's output, ``a`` the layer's input, both from eager.
    """
    features, boxes = inputs
    a6 = extractor.pooler(features, boxes).flatten(start_dim=1)
    z6 = extractor.fc6(a6)
    a7 = torch.relu(z6)
    z7 = extractor.fc7(a7)
    assert torch.equal(torch.relu(z7), extractor(features, boxes))  # the same arithmetic as forward()
    g6, g7 = torch.autograd.grad(torch.relu(z7), [z6, z7], weight)
    k = a6.shape[0]
    u = unit_roundoff(torch.float32)
    bounds = []  # (1 + 1e-6): room for the bounds' own float64 rounding
    for g, a in ((g6, a6), (g7, a7)):
        bounds.append(2 * gamma(k, u) * (g.abs().double().T @ a.abs().double()) * (1 + 1e-6))
        bounds.append(2 * gamma(k - 1, u) * g.abs().double().sum(0) * (1 + 1e-6))
    return bounds  # fc6.weight, fc6.bias, fc7.weight, fc7.bias: the order of parameters()


@pytest.mark.parametrize("name", TARGETS)
def test_compiled_dynamic_forward_and_backward_equal_eager(name):
    """``torch.compile(fullgraph=True, dynamic=True)``: the graph built for one RoI count serves
    another without recompiling; outputs and input gradients bitwise eager (the extractor's fc
    parameter gradients within :func:`_fc_parameter_bounds`)."""
    fn, inputs, leaves = _target(name, grad=True)
    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for step, args in enumerate(inputs):
        with torch._dynamo.config.patch(error_on_recompile=step > 0):
            out = compiled(*args)
        expected = fn(*args)
        assert torch.equal(out, expected)
        if not leaves:
            continue
        weight = torch.randn(expected.shape, generator=_generator(50 + step))
        grads = torch.autograd.grad(out, leaves, weight)
        expected_grads = torch.autograd.grad(expected, leaves, weight)
        features = len(leaves) if name != "FPN2MLPFeatureExtractor" else len(PYRAMID_SHAPES)
        for got, want in zip(grads[:features], expected_grads[:features]):
            assert torch.equal(got, want) and got.stride() == want.stride()
        if features < len(leaves):
            bounds = _fc_parameter_bounds(fn, args, weight)
            for got, want, bound in zip(grads[features:], expected_grads[features:], bounds):
                assert ((got - want).abs() <= bound).all()


def test_compile_as_the_first_call_in_a_fresh_process():
    """A process whose first call of our kernels is a compiled one (the old bug: Dynamo traced into
    Numba's dispatcher): forward and backward run, bitwise eager."""
    done = run_python(textwrap.dedent("""
        import torch
        from roialign_suite import impl
        fn = lambda x, rois: impl.roi_align(x, rois, (3, 2), 0.5, 0, True)
        x = torch.randn(2, 3, 10, 12, dtype=torch.float64, requires_grad=True)
        rois = torch.tensor([[0, 1.0, 1, 9, 7], [1, 0, 2, 5, 9], [1, 3, 3, 4, 4]], dtype=torch.float64)
        out = torch.compile(fn, fullgraph=True)(x, rois)
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
        expected = fn(x, rois)
        assert torch.equal(out, expected)
        assert torch.equal(grad, torch.autograd.grad(expected, x, torch.ones_like(expected))[0])
        print("ok")
    """))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# --- torch.export --------------------------------------------------------------------

def _called(program):
    return [n.target for n in program.graph.nodes if n.op == "call_function"]


def test_export_roi_align_module_with_dynamic_roi_count():
    """``torch.export`` of ``RoIAlign`` with K, N and C dynamic: the graph is our one operator, and
    the exported module reruns bitwise eager for other K (0 included), N and C."""
    module = impl.RoIAlign((3, 2), 0.5, 2, True)
    x = torch.randn(2, 3, 20, 24, dtype=torch.float64, generator=_generator(0))
    program = torch.export.export(module, (x, _rois(5, 1, torch.float64)),
                                  dynamic_shapes=({0: Dim("N"), 1: Dim("C")}, {0: Dim("K")}))
    assert _called(program) == [OPS.roi_align.default]
    wider = torch.randn(3, 5, 20, 24, dtype=torch.float64, generator=_generator(1))
    for features, rois in ((x, _rois(9, 2, torch.float64)), (x, _rois(0, 2, torch.float64)),
                           (wider, _rois(7, 3, torch.float64))):
        assert torch.equal(program.module()(features, rois), module(features, rois))


@pytest.mark.parametrize("name", ["Pooler", "FPN2MLPFeatureExtractor"])
def test_export_pooler_and_extractor_with_dynamic_box_counts(name):
    """``torch.export`` of the pooler and the extractor with each image's box count dynamic: the
    graph holds ``fpn_levels`` and ``multilevel_roi_align``; reruns are bitwise eager."""
    fn, inputs, _ = _target(name, grad=False)
    program = torch.export.export(fn, inputs[0], dynamic_shapes=([None] * 4, [{0: Dim("A")}, {0: Dim("B")}]))
    assert {OPS.fpn_levels.default, OPS.multilevel_roi_align.default} <= set(_called(program))
    for args in inputs:
        assert torch.equal(program.module()(*args), fn(*args))


# --- 9. data checks inside the operator, eager and compiled ----------------------------

def _bad_case(name):
    """``(fn, args, message)``: an input only the data can tell is bad, and the error it must raise."""
    x = torch.randn(2, 3, 10, 12)
    rois = _rois(5, 1)
    pool = lambda x, rois: impl.roi_align(x, rois, (3, 2), 0.5, 0, True)  # noqa: E731 (adaptive: grid check)
    if name == "non-finite":
        rois[3, 2] = float("nan")
        return pool, (x, rois), r"boxes row 3 has non-finite values"
    if name == "batch-index":
        rois[2, 0] = 2.0
        return pool, (x, rois), r"boxes row 2 has batch index 2\.0; it must be an integer in \[0, 2\)"
    if name == "no-images":
        return pool, (x[:0], rois), r"boxes row 0 has batch index 0\.0; it must be an integer in \[0, 0\)"
    if name == "adaptive-grid":
        rois[4, 3:] = 1e9
        return pool, (x, rois), r"boxes row 4 \(.*\) needs an adaptive sampling grid of .* \(limit 65536\)"
    if name == "level":
        pyramid = [torch.randn(2, 3, 16 >> i, 20 >> i) for i in range(3)]
        levels = torch.tensor([0, 3, 1, 2, 0])
        ml = lambda p0, p1, p2, rois, levels: multilevel_roi_align(  # noqa: E731
            [p0, p1, p2], rois, levels, [0.5, 0.25, 0.125], 2, 2, False)
        return ml, (*pyramid, rois, levels), r"levels\[1\] = 3 is not a level of 3 feature maps"
    mapper = impl.LevelMapper(2, 5)
    boxes = _boxes(3, 1)
    boxes[2, 1] = float("inf")
    return (lambda a, b: mapper([a, b])), (_boxes(2, 2), boxes), r"boxlists\[1\] row 2 has non-finite values"


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("name", ["non-finite", "batch-index", "no-images", "adaptive-grid", "level", "fpn-levels"])
def test_data_checks_raise_from_eager_and_compiled_calls(name, mode):
    """Checks that need the data run inside the operators' kernels, so a ``fullgraph`` compiled call
    (no break) still raises the eager ``ValueError`` naming the row, at run time."""
    fn, args, message = _bad_case(name)
    if mode == "compiled":
        fn = torch.compile(fn, fullgraph=True, dynamic=True)
    with pytest.raises(ValueError, match=message):
        fn(*args)
