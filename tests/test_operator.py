"""The contract of our ``torch.library`` operators (``impl/ops.py``), outside ``torch.compile``.

``torch.library.opcheck`` on every operator, and gradcheck/gradgradcheck
through them (which opcheck does not replace); fake and meta tensors; vmap
through our batching rules, never torch's per-item fallback, and the one
functorch transform that does not work (``torch.func.grad``);
TorchScript, ``torch.jit.trace`` + save/load and ``torch.fx``; CPU autocast;
float16/bfloat16 dtypes. Compilation and export: ``test_operator_compile.py``;
zero sizes: ``test_operator_zero_sizes.py``.
"""
import contextlib
import textwrap

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fresh_process import run_python
from roialign_suite import impl
from roialign_suite.impl.roi_align import multilevel_roi_align
from roialign_suite.properties.tolerances import gamma, unit_roundoff

OPS = torch.ops.roialign_suite
OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _map(shape, dtype=torch.float64, channels_last=False, seed=0, grad=True):
    """A random ``[N, C, H, W]`` map, channels_last if asked, a leaf that requires grad if ``grad``."""
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(grad)


def _rois(k, num_images, extent, dtype=torch.float64, seed=1):
    """``[K, 5]`` RoIs, row ``k`` on image ``k % num_images``, corners in ``[-2, extent)``, sides up to half of it."""
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(k, 2, dtype=dtype, generator=gen) * extent - 2
    side = torch.rand(k, 2, dtype=dtype, generator=gen) * extent / 2
    index = torch.arange(k, dtype=dtype).remainder(max(num_images, 1))[:, None]
    return torch.cat([index, corner, corner + side], dim=1)


# --- 1. opcheck --------------------------------------------------------------------

def _pyramid(dtype, channels_last=(False, True, False)):
    return [_map((2, 3, 16 >> i, 20 >> i), dtype, last, seed=i) for i, last in enumerate(channels_last)]


SCALES3 = [0.5, 0.25, 0.125]


def _opcheck_cases():
    """``(id, op, args)``: each operator on float64 and float32, both layouts, 3 levels, and K = 0."""
    cases = []
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).split(".")[1]
        rois = _rois(5, 2, 12, dtype)
        for last in (False, True):
            layout = "channels_last" if last else "contiguous"
            cases += [
                (f"roi_align-{name}-{layout}", OPS.roi_align.default,
                 (_map((2, 3, 10, 12), dtype, last), rois, 1.0, 3, 2, 2, False)),
                (f"roi_align-{name}-{layout}-adaptive-aligned", OPS.roi_align.default,
                 (_map((2, 3, 10, 12), dtype, last), rois, 0.5, 2, 3, 0, True)),
                (f"roi_align_backward-{name}-{layout}", OPS.roi_align_backward.default,
                 (_map((5, 3, 3, 2), dtype), rois, 1.0, 3, 2, 2, 3, 10, 12, 2, False, last)),
            ]
        levels = torch.tensor([0, 2, 1, 1, 0])
        cases += [
            (f"roi_align-{name}-K0", OPS.roi_align.default, (_map((2, 3, 10, 12), dtype), rois[:0], 1.0, 3, 2, 2, False)),
            (f"roi_align_backward-{name}-K0", OPS.roi_align_backward.default,
             (_map((0, 3, 3, 2), dtype), rois[:0], 1.0, 3, 2, 2, 3, 10, 12, 2, False, True)),
            (f"multilevel-{name}", OPS.multilevel_roi_align.default,
             (_pyramid(dtype), rois, levels, SCALES3, 2, 3, 2, True)),
            (f"multilevel-{name}-adaptive", OPS.multilevel_roi_align.default,
             (_pyramid(dtype, (True, False, True)), rois, levels, SCALES3, 3, 2, 0, False)),
            (f"multilevel-{name}-K0", OPS.multilevel_roi_align.default,
             (_pyramid(dtype), rois[:0], levels[:0], SCALES3, 2, 3, 2, True)),
            (f"multilevel_backward-{name}", OPS.multilevel_roi_align_backward.default,
             (_map((5, 3, 2, 3), dtype), rois, levels, SCALES3, 2, [16, 8, 4], [20, 10, 5], 2, True,
              [False, True, False])),
            (f"multilevel_backward-{name}-K0", OPS.multilevel_roi_align_backward.default,
             (_map((0, 3, 2, 3), dtype), rois[:0], levels[:0], SCALES3, 2, [16, 8, 4], [20, 10, 5], 2, True,
              [True, False, True])),
        ]
        boxes = _rois(6, 1, 900, dtype)[:, 1:].requires_grad_()
        for dialect, rows in (("torchvision", [4, 2]), ("maskrcnn_benchmark", []), ("detectron2", [0, 6])):
            cases.append((f"fpn_levels-{name}-{dialect}", OPS.fpn_levels.default,
                          (boxes, 2, 5, 224.0, 4, 1e-6, dialect, rows)))
        cases.append((f"fpn_levels-{name}-K0", OPS.fpn_levels.default,
                      (boxes[:0], 1, 6, 112.0, 3, 0.0, "torchvision", [0, 0])))
    return cases


@pytest.mark.parametrize("op, args", [pytest.param(op, args, id=i) for i, op, args in _opcheck_cases()])
def test_opcheck(op, args):
    """Schema, autograd registration, fake kernel (shapes, strides) and AOT dispatch with dynamic shapes."""
    result = torch.library.opcheck(op, args, test_utils=OPCHECK_TESTS)
    assert result == dict.fromkeys(OPCHECK_TESTS, "SUCCESS")


def test_gradients_registered_on_the_operators():
    """gradcheck and gradgradcheck through each forward operator (so through each backward operator
    and its own gradient), channels_last and contiguous maps. opcheck cannot tell: its autograd test
    passes an operator with no autograd registered at all (it only rejects one at the wrong key)."""
    x = _map((2, 2, 5, 6), channels_last=True)
    pyramid = [_map((2, 2, 6 >> i, 7 >> i), channels_last=i == 1, seed=i) for i in range(3)]
    rois, levels = _rois(4, 2, 12), torch.tensor([0, 2, 1, 0])

    def single(x):
        return OPS.roi_align(x, rois, 0.5, 2, 3, 2, True)

    def multi(*maps):
        return OPS.multilevel_roi_align(list(maps), rois, levels, [1.0, 0.5, 0.25], 3, 2, 0, False)

    for fn, inputs in ((single, (x,)), (multi, tuple(pyramid))):
        assert torch.autograd.gradcheck(fn, inputs) and torch.autograd.gradgradcheck(fn, inputs)


# --- 5. fake and meta tensors ------------------------------------------------------

def _metadata(t):
    return t.shape, t.dtype, t.stride()


def _pool_and_grads(x, rois, pyramid, boxes):
    """roi_align of ``x`` and the pooler on ``pyramid``, with the gradients of their sums."""
    out = impl.roi_align(x, rois, (3, 2), 0.5, 0, True)
    pooled = impl.fpn_box_head_pooler()(pyramid, boxes)
    grads = torch.autograd.grad(out.sum() + pooled.sum(), [x] + pyramid)
    return [out, pooled] + list(grads)


def _fake_inputs(make):
    """``make(shape, channels_last)`` -> the inputs of :func:`_pool_and_grads` (channels_last map and P3)."""
    pyramid = [make((2, 4, 64 >> i, 80 >> i), i == 1) for i in range(4)]
    rois = torch.tensor([[0, 1.0, 1, 9, 7], [1, 0, 2, 5, 9], [1, 3, 3, 4, 4]])
    boxes = [torch.tensor([[0, 0, 30, 20.0], [0, 0, 200, 150]]), torch.tensor([[5, 5, 60, 40.0]])]
    return make((2, 3, 10, 12), True), rois, pyramid, boxes


def test_fake_and_meta_outputs_and_gradients_match_the_real_ones():
    """Under FakeTensorMode and on meta tensors, outputs and gradients (the backward ops' fake
    kernels: channels_last in, channels_last gradient) have the real shapes, dtypes and strides."""
    def real(shape, last):
        return _map(shape, torch.float32, last)

    expected = [_metadata(t) for t in _pool_and_grads(*_fake_inputs(real))]
    assert expected[2][2] == (360, 1, 36, 3) and expected[4][2] == (5120, 1, 160, 4)  # channels_last grads
    with FakeTensorMode():
        fake = [_metadata(t) for t in _pool_and_grads(*_fake_inputs(real))]
    assert fake == expected

    def meta(shape, last):
        return real(shape, last).to("meta").requires_grad_()

    x, rois, pyramid, boxes = _fake_inputs(meta)
    outputs = _pool_and_grads(x, rois.to("meta"), pyramid, [b.to("meta") for b in boxes])
    assert all(t.device.type == "meta" for t in outputs)
    assert [_metadata(t) for t in outputs] == expected


# --- 6. vmap -----------------------------------------------------------------------

B, N = 3, 2


@contextlib.contextmanager
def _no_vmap_fallback():
    """vmap must go through our batching rules: torch's per-item fallback (one kernel call per
    item, equally exact) raises instead of running."""
    enabled = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(enabled)


def _pool(x, rois):
    return impl.roi_align(x, rois, (2, 3), 0.5, 2, True)


def _multilevel(p0, p1, p2, rois, levels):
    return multilevel_roi_align([p0, p1, p2], rois, levels, SCALES3, (2, 3), 2, True)


def _vmap_and_loop(fn, batched, in_dims):
    """``fn`` vmapped over ``batched`` (batch at dim 0; ``None`` in ``in_dims``: item 0 for all)
    with the batch moved to ``in_dims``, and the loop over items stacked."""
    args = [t.movedim(0, d) if d is not None else t[0] for t, d in zip(batched, in_dims)]
    with _no_vmap_fallback():
        vmapped = torch.vmap(fn, in_dims=tuple(in_dims))(*args)
    loop = torch.stack([fn(*[t[b] if d is not None else t[0] for t, d in zip(batched, in_dims)]) for b in range(B)])
    return vmapped, loop


def _box_sets(k, extent):
    return torch.stack([_rois(k, N, extent, seed=s) for s in range(B)])


def _batched_pyramid():
    return [_map((B, N, 3, 16 >> i, 20 >> i), seed=i, grad=False) for i in range(3)]


@pytest.mark.parametrize("in_dims", [(0, None), (None, 0), (0, 0), (1, 2)],
                         ids=["features", "box-sets", "both", "both-inner-dims"])
def test_vmap_roi_align_equals_loop(in_dims):
    """vmap over feature maps, over box sets, or both (at any dim): our rule, bitwise the loop."""
    vmapped, loop = _vmap_and_loop(_pool, [_map((B, N, 3, 10, 12), grad=False), _box_sets(4, 20)], in_dims)
    assert torch.equal(vmapped, loop)


@pytest.mark.parametrize("in_dims", [(0, 0, 0, None, None), (None, 0, None, None, None), (None, None, None, 0, 0),
                                     (0, 0, 0, 0, None), (0, None, 0, 0, 0)],
                         ids=["features", "one-level", "box-sets", "features-and-boxes", "mixed"])
def test_vmap_multilevel_equals_loop(in_dims):
    """The multi-level operator under vmap (any mix of batched levels, boxes and level indices):
    our rule, bitwise the loop."""
    levels = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 0, 1], [1, 0, 1, 2, 2]])
    vmapped, loop = _vmap_and_loop(_multilevel, _batched_pyramid() + [_box_sets(5, 24), levels], in_dims)
    assert torch.equal(vmapped, loop)


def test_vmap_pooler_over_features_with_gradients_equals_loop():
    """The pooler vmapped over a batch of pyramids: outputs and gradients bitwise the loop's."""
    pooler = impl.Pooler((2, 3), SCALES3, 2, canonical_scale=16, canonical_level=2)  # sides 8, 16, 32: P1, P2, P3
    boxes = [_rois(4, 1, 80, seed=5)[:, 1:], _rois(3, 1, 80, seed=6)[:, 1:]]
    weight = _map((B, 7, 3, 2, 3), grad=False, seed=7)
    vmapped_maps, loop_maps = _batched_pyramid(), [p.detach().clone() for p in _batched_pyramid()]
    for maps in (vmapped_maps, loop_maps):
        for p in maps:
            p.requires_grad_()
    with _no_vmap_fallback():
        vmapped = torch.vmap(lambda *p: pooler(list(p), boxes))(*vmapped_maps)
    loop = torch.stack([pooler([p[b] for p in loop_maps], boxes) for b in range(B)])
    assert torch.equal(vmapped, loop) and len(set(pooler.levels(torch.cat(
        [torch.zeros(7, 1, dtype=torch.float64), torch.cat(boxes)], 1)).tolist())) == 3
    for got, want in zip(torch.autograd.grad(vmapped, vmapped_maps, weight), torch.autograd.grad(loop, loop_maps, weight)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("batched_rois", [False, True], ids=["features", "both"])
def test_autograd_through_vmap_over_features_equals_loop(batched_rois):
    """With the maps batched, each item's gradient comes from its own RoIs: bitwise the loop's."""
    xs, rois = _map((B, N, 3, 10, 12)), _box_sets(4, 20)
    weight = _map((B, 4, 3, 2, 3), grad=False, seed=7)
    xl = xs.detach().clone().requires_grad_()
    with _no_vmap_fallback():
        vmapped = torch.vmap(_pool, in_dims=(0, 0 if batched_rois else None))(xs, rois if batched_rois else rois[0])
    loop = torch.stack([_pool(xl[b], rois[b] if batched_rois else rois[0]) for b in range(B)])
    assert torch.equal(torch.autograd.grad(vmapped, xs, weight)[0], torch.autograd.grad(loop, xl, weight)[0])


def test_autograd_through_vmap_over_box_sets_within_summation_bound():
    """Box sets batched, one map: its gradient sums every set's terms. vmap sums all B*K RoIs in one
    kernel call, the loop per set and then across sets: the same m float64 terms in two orders, so
    each is within gamma(m - 1) * S of the exact sum (S = sum of |terms| = the gradient of |weight|,
    the bilinear weights being >= 0) and they differ by at most 2 * gamma(m - 1) * S, m = B*K*h*w*s^2."""
    x, rois = _map((N, 3, 10, 12)), _box_sets(4, 20)
    weight = _map((B, 4, 3, 2, 3), grad=False, seed=7)
    with _no_vmap_fallback():
        vmapped = torch.autograd.grad(torch.vmap(_pool, in_dims=(None, 0))(x, rois), x, weight)[0]
    loop = torch.autograd.grad(torch.stack([_pool(x, rois[b]) for b in range(B)]), x, weight)[0]
    magnitude = torch.autograd.grad(torch.stack([_pool(x, rois[b]) for b in range(B)]), x, weight.abs())[0]
    terms = B * 4 * 2 * 3 * 2 ** 2
    bound = 2 * gamma(terms - 1, unit_roundoff(torch.float64)) * magnitude * (1 + 1e-12)
    assert ((vmapped - loop).abs() <= bound).all() and magnitude.any()


def test_vmap_over_the_backward_operators_equals_loop():
    """vmap of ``autograd.grad`` over a batch of upstream gradients runs the backward operators'
    rules (the batched gradients of roi_align and of the multi-level op): bitwise the loop."""
    x, pyramid = _map((N, 3, 10, 12), channels_last=True), _pyramid(torch.float64)
    rois, levels = _rois(5, N, 12), torch.tensor([0, 2, 1, 1, 0])
    for out, inputs in ((_pool(x, rois), [x]), (_multilevel(*pyramid, rois, levels), pyramid)):
        weights = _map((B,) + tuple(out.shape), grad=False, seed=8)
        with _no_vmap_fallback():
            vmapped = torch.vmap(lambda w: torch.autograd.grad(out, inputs, w, retain_graph=True))(weights)
        loop = zip(*[torch.autograd.grad(out, inputs, w, retain_graph=True) for w in weights])
        for got, want in zip(vmapped, loop):
            assert torch.equal(got, torch.stack(want))


def test_func_grad_is_not_supported_yet():
    """Known limitation (torch 2.14): functorch transforms need the autograd.Function that
    ``torch.library.register_autograd`` generates to define ``setup_context``, and it does not, so
    ``torch.func.grad``/``vjp`` raise. When this test fails, torch has fixed it: test grad there."""
    x, rois = _map((1, 2, 6, 6), grad=False), _rois(2, 1, 6)
    for transform in (torch.func.grad(lambda x: _pool(x, rois).sum()), lambda x: torch.func.vjp(
            lambda x: _pool(x, rois), x)):
        with pytest.raises(RuntimeError, match="it must override the setup_context staticmethod"):
            transform(x)


# --- 7. TorchScript, trace + save/load, torch.fx -------------------------------------

def test_script_takes_tensor_and_list_boxes():
    """``torch.jit.script(impl.RoIAlign)`` equals eager bitwise with ``Tensor[K, 5]`` and list boxes."""
    module = impl.RoIAlign((3, 2), 0.5, 0, True)
    scripted = torch.jit.script(module)
    x, rois = _map((2, 3, 10, 12), grad=False), _rois(5, 2, 20)
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    expected = module(x, torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(per_image)]))
    assert torch.equal(scripted(x, rois), module(x, rois))
    assert torch.equal(scripted(x, per_image), expected)
    assert scripted(x, [rois[:0, 1:]] * 2).shape == (0, 3, 3, 2)  # ([] has no type a scripted call can infer)


def test_traced_module_saved_and_loaded_in_fresh_process(tmp_path):
    """A traced RoIAlign saved to disk reruns bitwise in a fresh process once ``roialign_suite.impl``
    is imported (which registers the operators); before that the load fails naming the operator."""
    module = impl.RoIAlign(3, 0.5, 2)
    x, rois = _map((2, 3, 10, 12), grad=False), _rois(5, 2, 20)
    torch.jit.trace(module, (x, rois)).save(str(tmp_path / "traced.pt"))
    other = _rois(7, 2, 20, seed=9)
    torch.save({"x": x, "rois": other, "expected": module(x, other)}, tmp_path / "case.pt")
    script = textwrap.dedent(f"""
        import torch
        try:
            torch.jit.load({str(tmp_path / 'traced.pt')!r})
        except RuntimeError as error:
            assert "roialign_suite::roi_align" in str(error), error
        else:
            raise AssertionError("loaded without the operators registered")
        import roialign_suite.impl
        case = torch.load({str(tmp_path / 'case.pt')!r})
        out = torch.jit.load({str(tmp_path / 'traced.pt')!r})(case["x"], case["rois"])
        assert torch.equal(out, case["expected"]), "rerun differs"
        print("ok")
    """)
    assert run_python(script).stdout.strip().endswith("ok")


class _ConvThenPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1).double()
        self.pool = impl.RoIAlign((2, 3), 0.5, 2)

    def forward(self, x, rois):
        return self.pool(self.conv(x), rois)


def test_fx_keeps_roi_align_as_one_leaf():
    """``torch.fx.symbolic_trace`` records ``impl.roi_align`` as one call_function node (``torch.fx.wrap``)."""
    model = _ConvThenPool()
    graph = torch.fx.symbolic_trace(model)
    calls = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert calls == [impl.roi_align]
    x, rois = _map((2, 3, 10, 12), grad=False), _rois(5, 2, 20)
    assert torch.equal(graph(x, rois), model(x, rois))


# --- 8. CPU autocast ---------------------------------------------------------------

@pytest.mark.parametrize("boxes_dtype", [torch.bfloat16, torch.float32])
def test_autocast_runs_in_float32_and_rounds_once(boxes_dtype):
    """A bfloat16 conv under CPU autocast feeding roi_align and the pooler: bfloat16 results equal to
    our operators in float32 on the same (bfloat16-valued) inputs, rounded to bfloat16, and so is the
    gradient. float32 boxes with bfloat16 features are accepted, as by torchvision."""
    x = _map((2, 3, 32, 40), torch.float32, grad=False)
    convs = [torch.nn.Conv2d(3, 4, 3, padding=1) for _ in range(4)]
    rois = _rois(8, 2, 300, torch.float32).bfloat16().to(boxes_dtype)  # bfloat16 values, sides up to 150: P2 and P3
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pyramid = [conv(torch.nn.functional.avg_pool2d(x, 2 ** i)) for i, conv in enumerate(convs)]
        y = pyramid[0].detach().requires_grad_()
        out = impl.roi_align(y, rois, (3, 2), 0.25, 2, True)
        pooler = impl.fpn_box_head_pooler()
        pooled = pooler(pyramid, boxes)
    assert y.dtype == out.dtype == pooled.dtype == torch.bfloat16
    assert torch.equal(out, OPS.roi_align(y.float(), rois.float(), 0.25, 3, 2, 2, True).bfloat16())
    flat = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
    expected = OPS.multilevel_roi_align([p.float() for p in pyramid], flat.float(), pooler.levels(flat),
                                        list(pooler.scales), 7, 7, 2, False).bfloat16()
    assert torch.equal(pooled, expected) and len(set(pooler.levels(flat).tolist())) >= 2
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).bfloat16()
    (grad,) = torch.autograd.grad(out, y, weight)
    assert grad.dtype == torch.bfloat16
    assert torch.equal(grad, OPS.roi_align_backward(weight.float(), rois.float(), 0.25, 3, 2, 2, 4, 32, 40, 2, True,
                                                    False).bfloat16())


def test_autocast_leaves_float64_in_float64():
    """As autocast's ``cached_cast`` (and torchvision's rule): a float64 map is not lowered."""
    x, rois = _map((2, 3, 10, 12), grad=False), _rois(5, 2, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = impl.roi_align(x, rois, 3, 0.5, 2)
    assert torch.equal(out, impl.roi_align(x, rois, 3, 0.5, 2))


# --- 9. float16 / bfloat16 through the operator --------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_half_dtypes_through_the_operator(dtype, channels_last):
    """Halves run natively (no autocast): output and gradient in the input's dtype, the gradient in
    its layout, both finite. Their values: ``test_half_precision.py`` (within a derived bound)."""
    x = _map((2, 3, 10, 12), torch.float32, channels_last, grad=False).to(dtype).requires_grad_()
    rois = _rois(5, 2, 20, dtype)
    out = impl.roi_align(x, rois, (3, 2), 0.5, 2)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert out.dtype == grad.dtype == dtype and out.shape == (5, 3, 3, 2) and out.is_contiguous()
    assert grad.shape == x.shape and grad.stride() == x.stride()
    assert out.isfinite().all() and grad.isfinite().all() and grad.abs().sum() > 0
