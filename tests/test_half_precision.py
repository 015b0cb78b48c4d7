"""float16 and bfloat16 features: the kernels' bit conversions, and the forward
and backward against the float64 reference within the bounds of
``properties/tolerances.py`` (derived there; for the halves: exact half
inputs, float32 sums, one rounding of the result to the half, ``u_h (|ref| +
E) + eta_h``). Both sides take the same half-valued inputs, decoded exactly,
and compute sample coordinates and bilinear weights in float64 in the same
order of operations (bit for bit), so only the sums and the final rounding
to the half differ.
"""
import numba
import numpy as np
import pytest
import torch

from roialign_suite import impl
from roialign_suite.benchmarks.runners import thread_count
from roialign_suite.benchmarks.workloads import realistic_boxes
from roialign_suite.impl import kernels
from roialign_suite.impl.inputs import rois_from_boxes
from roialign_suite.impl.storage import storage
from roialign_suite.implementations import registry
from roialign_suite.properties.checks import (
    assert_backward_within_bound,
    assert_forward_within_bound,
    check_at_least_as_accurate,
)
from roialign_suite.properties.strategies import case_of_tensors
from roialign_suite.properties.tolerances import SUBNORMAL_FLOOR

HALVES = pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
SAMPLING = pytest.mark.parametrize("sampling_ratio", [2, 0], ids=["fixed", "adaptive"])
LAYOUTS = pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])

OURS = registry.by_name()["numba"]
TORCHVISION_CPU = registry.by_name()["torchvision-cpu"]
MANTISSA_BITS = {torch.float16: 10, torch.bfloat16: 7}
POOLED = (3, 3)
SCALE = 0.5


# --- bit conversions ------------------------------------------------------------------

ALL_BITS = np.arange(1 << 16, dtype=np.int64).astype(np.uint16)


def _torch_half(bits: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(bits.view(np.int16)).view(dtype)


def _ours_to_float32(bits: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    out = np.empty(bits.shape, np.float32)
    kernels.convert(bits.view(storage(dtype).array), out)
    return out


def _ours_from_float32(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    out = np.empty(values.shape, storage(dtype).array)
    kernels.convert(values, out)
    return out.view(np.uint16)


@HALVES
def test_half_to_float32_is_torchs_on_all_65536_patterns(dtype):
    ours = _ours_to_float32(ALL_BITS, dtype)
    theirs = _torch_half(ALL_BITS, dtype).float().numpy()
    nan = np.isnan(theirs)
    np.testing.assert_array_equal(np.isnan(ours), nan)
    # Bitwise, so -0 and every subnormal count.
    np.testing.assert_array_equal(ours[~nan].view(np.uint32), theirs[~nan].view(np.uint32))


def _float32_probes(dtype: torch.dtype) -> np.ndarray:
    """float32 values around every rounding boundary of ``dtype``, both signs, and a random sample.

    Normal results: every exponent and kept mantissa, with the dropped bits
    0, 1, just below half, exactly half (a tie), just above, all ones.
    Subnormal results (their boundary is not in those bits): every tie
    ``(k + 1/2) * spacing`` and its float32 neighbours. Overflow, infinities
    and NaNs are on the exponent grid (exponent 255, the largest finite
    half's tie).
    """
    dropped = 23 - MANTISSA_BITS[dtype]
    half = 1 << (dropped - 1)
    low = np.array([0, 1, half - 1, half, half + 1, (1 << dropped) - 1], dtype=np.uint32)
    kept = np.arange(1 << (23 - dropped), dtype=np.uint32) << dropped
    exponents = np.arange(256, dtype=np.uint32) << 23
    grid = (exponents[:, None, None] | kept[None, :, None] | low[None, None, :]).ravel().view(np.float32)
    spacing = 2 * SUBNORMAL_FLOOR[dtype]  # the smallest subnormal
    ties = ((np.arange(1 << MANTISSA_BITS[dtype]) + 0.5) * spacing).astype(np.float32)
    subnormal = np.concatenate([ties, np.nextafter(ties, np.float32(0)), np.nextafter(ties, np.float32(1))])
    random = np.random.default_rng(0).integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    probes = np.concatenate([grid, subnormal, random])
    return np.concatenate([probes, -probes])


@HALVES
def test_float32_to_half_rounds_as_torch(dtype):
    values = _float32_probes(dtype)
    ours = _ours_from_float32(values, dtype)
    theirs = torch.from_numpy(values).to(dtype)
    nan = theirs.isnan().numpy()
    np.testing.assert_array_equal(_torch_half(ours, dtype).isnan().numpy(), nan)
    mismatch = np.nonzero((ours != theirs.view(torch.int16).numpy().view(np.uint16)) & ~nan)[0]
    assert mismatch.size == 0, (
        f"{mismatch.size} float32 values round differently, e.g. {values[mismatch[:4]].tolist()} -> "
        f"{[hex(b) for b in ours[mismatch[:4]]]}, torch {[hex(b) for b in theirs.view(torch.int16).numpy().view(np.uint16)[mismatch[:4]]]}"
    )


@HALVES
def test_conversions_ignore_flush_to_zero(dtype):
    """The conversions run in whatever thread calls them; flush-to-zero in that thread changes nothing."""
    values = _float32_probes(dtype)[::7]
    expected = _ours_to_float32(ALL_BITS, dtype), _ours_from_float32(values, dtype)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:
        flushed = _ours_to_float32(ALL_BITS, dtype), _ours_from_float32(values, dtype)
    finally:
        torch.set_flush_denormal(False)
    np.testing.assert_array_equal(flushed[0].view(np.uint32), expected[0].view(np.uint32))
    np.testing.assert_array_equal(flushed[1], expected[1])


# --- forward and backward against the reference ----------------------------------------

def _case(dtype, layout="contiguous", seed=0):
    """Half features [2, 6, 9, 13] in ``layout``; half boxes at SCALE: three random ones on
    each image (the same three), one crossing every border, a degenerate and an inverted one."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 9, 13, generator=gen, dtype=torch.float64)
    x[:, 1] *= 1e-6  # float16 subnormals, in and out
    x[:, 2] *= 300.0
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        wide = torch.zeros(2, 6, 9, 26, dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    inside = realistic_boxes(3, (18, 26), gen).double()
    edges = torch.tensor([[1, -4.0, -6.0, 52.0, 38.0], [1, 6.0, 6.0, 6.0, 6.0], [0, 22.0, 14.0, 5.0, 2.0]])
    boxes = torch.cat([rois_from_boxes([inside, inside], inside.new_zeros(2, 1, 1, 1)), edges.double()])
    return x, boxes.to(dtype)


def _check_layout(grad, x, layout):
    if layout == "channels_last":
        assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
    else:
        assert grad.is_contiguous()
    assert grad.shape == x.shape and grad.dtype == x.dtype


@HALVES
@LAYOUTS
@BOTH_CONVENTIONS
@SAMPLING
def test_forward_and_backward_within_derived_bound(dtype, layout, aligned, sampling_ratio):
    x, boxes = _case(dtype, layout)
    x.requires_grad_()
    out = impl.roi_align(x, boxes, POOLED, SCALE, sampling_ratio, aligned)
    assert out.dtype == dtype and out.is_contiguous()
    case = case_of_tensors(x, boxes, POOLED, SCALE, sampling_ratio, aligned)
    assert_forward_within_bound(OURS, case, out, x.detach(), f"{dtype} forward")

    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_output[:, 1] *= 1e-6
    grad_output = grad_output.to(dtype)
    (grad,) = torch.autograd.grad(out, x, grad_output)
    _check_layout(grad, x, layout)
    assert_backward_within_bound(OURS, case, grad_output, grad, f"{dtype} backward")


@BOTH_CONVENTIONS
@SAMPLING
def test_float16_forward_at_least_as_accurate_as_torchvision(aligned, sampling_ratio):
    """Elementwise: ``|ours - ref| <= max(|torchvision - ref|, max(half_ulp(ref), E) + E)``
    (``tolerances.no_less_accurate_bound``)."""
    x, boxes = _case(torch.float16)
    check_at_least_as_accurate(OURS, TORCHVISION_CPU, case_of_tensors(x, boxes, POOLED, SCALE, sampling_ratio, aligned), x)


# --- determinism and plumbing -----------------------------------------------------------

@HALVES
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_half_backward_bitwise_identical_on_one_and_two_threads(dtype, layout):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here (NUMBA_NUM_THREADS)")
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 40, 56, generator=gen).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    boxes = [realistic_boxes(40, (160, 224), gen).to(dtype) for _ in range(2)]
    grad_output = torch.randn(80, 16, 7, 7, generator=gen).to(dtype)
    results = []
    for threads in (1, 2):
        with thread_count(threads):
            out = impl.roi_align(x, boxes, 7, 0.25, 2, True)
            (grad,) = torch.autograd.grad(out, x, grad_output)
        results.append((out, grad))
    (out1, grad1), (out2, grad2) = results
    _check_layout(grad1, x, layout)
    _check_layout(grad2, x, layout)
    assert torch.equal(out1.view(torch.int16), out2.view(torch.int16))
    assert torch.equal(grad1.view(torch.int16), grad2.view(torch.int16)), "backward differs between 1 and 2 threads"


@HALVES
@pytest.mark.parametrize("strides", ["broadcast", "transposed"])
def test_half_backward_reads_grad_output_strides(dtype, strides):
    """A zero-stride ``grad_output`` (as ``out.sum()`` hands back) or a transposed one gives the gradient of its dense copy."""
    x, boxes = _case(dtype)
    x.requires_grad_()
    out = impl.roi_align(x, boxes, POOLED, SCALE, 2, False)
    if strides == "broadcast":
        grad_output = torch.full((1, 1, 1, 1), 0.75, dtype=dtype).expand_as(out)
    else:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(dtype).transpose(2, 3)
    (strided_grad,) = torch.autograd.grad(out, x, grad_output, retain_graph=True)
    (dense_grad,) = torch.autograd.grad(out, x, grad_output.contiguous())
    assert torch.equal(strided_grad.view(torch.int16), dense_grad.view(torch.int16))


@HALVES
def test_half_boxes_must_match_half_features(dtype):
    x, boxes = _case(dtype)
    with pytest.raises(TypeError, match=rf"boxes dtype torch.float32 does not match input dtype {dtype}"):
        impl.roi_align(x, boxes.float(), POOLED)


# --- the multi-level pooler ----------------------------------------------------------------

@BOTH_CONVENTIONS
def test_pooler_on_bfloat16_within_derived_bound(aligned):
    """``impl.fpn_box_head_pooler`` on bfloat16 P2-P5 maps: each RoI's row and each level's
    gradient within the single-level bounds of the reference on that RoI's level."""
    gen = torch.Generator().manual_seed(3)
    image = (800, 1216)
    features = [torch.randn(2, 4, image[0] // s, image[1] // s, generator=gen).to(torch.bfloat16) for s in (4, 8, 16, 32)]
    features[1] = features[1].contiguous(memory_format=torch.channels_last)
    features = [f.requires_grad_() for f in features]
    boxes = [realistic_boxes(12, image, gen).to(torch.bfloat16) for _ in range(2)]
    pooler = impl.fpn_box_head_pooler(aligned=aligned)
    rois = rois_from_boxes(boxes, features[0])
    levels = pooler.levels(rois)
    assert torch.equal(levels, pooler.levels(rois.double())), "bfloat16 boxes levelled unlike their float64 values"
    assert set(levels.tolist()) == {0, 1, 2, 3}, "the boxes should use every level"

    out = pooler(features, boxes)
    assert out.dtype == torch.bfloat16
    grad_output = torch.randn(out.shape, generator=gen).to(torch.bfloat16)
    grads = torch.autograd.grad(out, features, grad_output)
    for level, (feature, grad, scale) in enumerate(zip(features, grads, pooler.scales)):
        rows = levels == level
        case = case_of_tensors(feature, rois[rows], pooler.output_size, scale, pooler.sampling_ratio, aligned)
        assert_forward_within_bound(OURS, case, out[rows], feature.detach(), f"pooler level {level} forward")
        _check_layout(grad, feature, "channels_last" if level == 1 else "contiguous")
        assert_backward_within_bound(OURS, case, grad_output[rows], grad, f"pooler level {level} backward")
