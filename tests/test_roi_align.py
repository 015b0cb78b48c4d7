"""Hand-checked cases for impl.roi_align against the reference and torchvision.

The property suite (properties/) generates cases; these pin published
fixtures and the contract's corners so a newcomer can read what is promised.
"""
import pytest
import torch
import torchvision

from roialign_suite import impl
from roialign_suite import reference

BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])


def _two_image_case(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 13, dtype=dtype, generator=gen)
    boxes = torch.tensor(
        [
            [0, 1.3, 2.1, 7.5, 8.2],
            [1, -2.0, -3.0, 26.0, 19.0],  # crosses every border
            [1, 3.0, 3.0, 3.0, 3.0],  # degenerate
            [0, 11.0, 7.0, 2.5, 1.0],  # inverted
            [1, 1.3, 2.1, 7.5, 8.2],  # same box, other image
            [0, 1.0, 2.0, 9.0, 10.0],  # overlaps the first
        ],
        dtype=dtype,
    )
    return x, boxes


# --- published fixtures -----------------------------------------------------

# detectron2 tests/layers/test_roi_align.py: arange(25) on a 5x5 map, box
# (1, 1, 3, 3), output 4x4, adaptive sampling, scale 1.
DETECTRON2_LEGACY = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
DETECTRON2_ALIGNED = [[4.5, 5, 5.5, 6], [7, 7.5, 8, 8.5], [9.5, 10, 10.5, 11], [12, 12.5, 13, 13.5]]


@pytest.mark.parametrize("roi_align", [impl.roi_align, reference.roi_align], ids=["numba", "reference"])
@pytest.mark.parametrize("aligned, expected", [(False, DETECTRON2_LEGACY), (True, DETECTRON2_ALIGNED)])
def test_detectron2_fixture(roi_align, aligned, expected):
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    boxes = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=torch.float64)
    out = roi_align(x, boxes, (4, 4), 1.0, 0, aligned)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


# mmcv tests/test_ops/test_roi_align.py: aligned, output 2x2, sampling 2, scale 1;
# (features, rois, expected output, expected grad of sum).
MMCV_CASES = [
    (
        [[[[1.0, 2.0], [3.0, 4.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]], [[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0], [9.0, 10.0, 13.0, 14.0], [11.0, 12.0, 15.0, 16.0]]]],
        [[0.0, 0.0, 0.0, 3.0, 3.0]],
        [[[[1.9375, 4.75], [7.5625, 10.375]]]],
        [
            [
                [
                    [0.47265625, 0.42968750, 0.42968750, 0.04296875],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.04296875, 0.03906250, 0.03906250, 0.00390625],
                ]
            ]
        ],
    ),
]


@pytest.mark.parametrize("roi_align", [impl.roi_align, reference.roi_align], ids=["numba", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(MMCV_CASES)))
def test_mmcv_fixture(roi_align, dtype, case):
    features, rois, expected_out, expected_grad = MMCV_CASES[case]
    x = torch.tensor(features, dtype=dtype, requires_grad=True)
    out = roi_align(x, torch.tensor(rois, dtype=dtype), (2, 2), 1.0, 2, True)
    out.sum().backward()
    # Every fixture value is a short dyadic fraction: exact in float32 too.
    torch.testing.assert_close(out.detach(), torch.tensor(expected_out, dtype=dtype), rtol=0, atol=0)
    torch.testing.assert_close(x.grad, torch.tensor(expected_grad, dtype=dtype), rtol=0, atol=0)


# --- agreement with the two oracles ----------------------------------------

@BOTH_CONVENTIONS
@pytest.mark.parametrize("sampling_ratio", [2, 0, 3])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.25, 0.7])
def test_forward_matches_reference_in_float64(aligned, sampling_ratio, spatial_scale):
    x, boxes = _two_image_case()
    ours = impl.roi_align(x, boxes, (3, 4), spatial_scale, sampling_ratio, aligned)
    ref = reference.roi_align(x, boxes, (3, 4), spatial_scale, sampling_ratio, aligned)
    # Same sample points bit for bit; only the order of a <= 4*grid^2-term
    # sum of O(1) values differs: a few float64 ulps.
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


@BOTH_CONVENTIONS
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_forward_matches_torchvision_cpu(aligned, sampling_ratio):
    x, boxes = _two_image_case()
    ours = impl.roi_align(x, boxes, (3, 4), 0.5, sampling_ratio, aligned)
    theirs = torchvision.ops.roi_align(x, boxes, (3, 4), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


@BOTH_CONVENTIONS
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_backward_matches_reference_in_float64(aligned, sampling_ratio):
    x, boxes = _two_image_case()
    grad_out = torch.randn(boxes.shape[0], 3, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for roi_align in (impl.roi_align, reference.roi_align):
        xx = x.clone().requires_grad_()
        roi_align(xx, boxes, (3, 4), 0.7, sampling_ratio, aligned).backward(grad_out)
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-10)


@BOTH_CONVENTIONS
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_gradcheck_several_images(aligned, sampling_ratio):
    x, boxes = _two_image_case()
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: impl.roi_align(t, boxes, (3, 4), 0.7, sampling_ratio, aligned), (x,)
    )


# --- the contract's corners -------------------------------------------------

def test_list_of_boxes_equals_batch_index_form():
    x, boxes = _two_image_case()
    as_list = [boxes[boxes[:, 0] == i, 1:] for i in range(2)]
    reordered = torch.cat([boxes[boxes[:, 0] == i] for i in range(2)])
    torch.testing.assert_close(
        impl.roi_align(x, as_list, 5, 0.5, 2), impl.roi_align(x, reordered, 5, 0.5, 2), rtol=0, atol=0
    )


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "permuted"])
def test_any_input_strides(layout):
    x, boxes = _two_image_case()
    if layout == "channels_last":
        strided = x.to(memory_format=torch.channels_last)
    elif layout == "permuted":
        strided = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    else:
        strided = x
    torch.testing.assert_close(
        impl.roi_align(strided, boxes, 4, 0.5, 2), impl.roi_align(x, boxes, 4, 0.5, 2), rtol=0, atol=0
    )


def test_any_grad_output_strides():
    x, boxes = _two_image_case()
    g = torch.randn(boxes.shape[0], 3, 4, 5, dtype=torch.float64).transpose(2, 3)  # [K, 3, 5, 4] view
    grads = []
    for grad in (g, g.contiguous()):
        xx = x.clone().requires_grad_()
        impl.roi_align(xx, boxes, (5, 4), 0.5, 2).backward(grad)
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_no_boxes_gives_empty_output():
    x, _ = _two_image_case()
    assert impl.roi_align(x, torch.zeros(0, 5, dtype=x.dtype), (3, 4)).shape == (0, 3, 3, 4)
    assert impl.roi_align(x, [torch.zeros(0, 4, dtype=x.dtype)] * 2, 2).shape == (0, 3, 2, 2)


def test_module_form():
    x, boxes = _two_image_case()
    module = impl.RoIAlign((3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(module(x, boxes), impl.roi_align(x, boxes, (3, 4), 0.5, 2, True))
    assert "aligned=True" in repr(module)


def test_reference_module_form_is_its_own():
    # The oracle's module shares no code with impl's: it is a plain nn.Module calling reference.roi_align.
    x, boxes = _two_image_case()
    module = reference.RoIAlign((3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    assert isinstance(module, torch.nn.Module) and not isinstance(module, impl.RoIAlign)
    torch.testing.assert_close(module(x, boxes), reference.roi_align(x, boxes, (3, 4), 0.5, 2, True), rtol=0, atol=0)
    assert "aligned=True" in repr(module)


def test_backward_is_bitwise_deterministic_across_thread_counts():
    x, boxes = _two_image_case(torch.float32)
    x = torch.randn(2, 80, 9, 13)  # 1 and 2 threads cut the 18 rows into different bands
    grads = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            xx = x.clone().requires_grad_()
            impl.roi_align(xx, boxes.float(), 3, 0.5, 2).sum().backward()
            grads.append(xx.grad)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


# --- bad input ---------------------------------------------------------------

def _good():
    return torch.zeros(2, 3, 8, 8), torch.tensor([[0, 1.0, 1.0, 4.0, 4.0], [1, 0.0, 0.0, 2.0, 2.0]])


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_coordinates_name_the_row(bad_value):
    x, boxes = _good()
    boxes[1, 3] = bad_value
    with pytest.raises(ValueError, match=r"row 1 has non-finite"):
        impl.roi_align(x, boxes, 2)


@pytest.mark.parametrize("index", [-1.0, 2.0, 0.5])
def test_bad_batch_index_names_the_row(index):
    x, boxes = _good()
    boxes[1, 0] = index
    with pytest.raises(ValueError, match=r"row 1 has batch index"):
        impl.roi_align(x, boxes, 2)


def test_list_longer_than_batch_is_rejected():
    x, _ = _good()
    with pytest.raises(ValueError, match=r"row 2 has batch index 2"):
        impl.roi_align(x, [torch.ones(1, 4)] * 3, 2)


@pytest.mark.parametrize(
    "boxes, error, message",
    [
        (torch.zeros(3, 4), ValueError, r"boxes must have shape \[K, 5\]"),
        (torch.zeros(5), ValueError, r"boxes must have shape \[K, 5\]"),
        ([torch.zeros(2, 5)], ValueError, r"boxes\[0\] must have shape \[K, 4\]"),
        (torch.zeros(1, 5, dtype=torch.float64), TypeError, r"dtype torch.float64 does not match"),
        ([torch.zeros(1, 4, dtype=torch.int64)], TypeError, r"boxes\[0\] dtype torch.int64"),
        ("boxes", TypeError, r"boxes must be a Tensor"),
        ([[0.0, 1.0, 1.0, 2.0]], TypeError, r"boxes\[0\] must be a torch.Tensor"),
    ],
)
def test_malformed_boxes(boxes, error, message):
    x, _ = _good()
    with pytest.raises(error, match=message):
        impl.roi_align(x, boxes, 2)


@pytest.mark.parametrize(
    "features, error, message",
    [
        (torch.zeros(3, 8, 8), ValueError, r"shape \[N, C, H, W\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), TypeError, r"input dtype"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.complex64), TypeError, r"input dtype"),
        (torch.zeros(2, 3, 8, 8).numpy(), TypeError, r"input must be a torch.Tensor"),
    ],
)
def test_malformed_features(features, error, message):
    _, boxes = _good()
    with pytest.raises(error, match=message):
        impl.roi_align(features, boxes, 2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(output_size=0), ValueError, "output_size must be positive"),
        (dict(output_size=(2, -1)), ValueError, "output_size must be positive"),
        (dict(output_size=(2, 2, 2)), ValueError, "output_size must be an int or a pair"),
        (dict(output_size=2.5), TypeError, "output_size must hold ints"),
        (dict(output_size=2, spatial_scale=0.0), ValueError, "spatial_scale must be finite and positive"),
        (dict(output_size=2, spatial_scale=float("nan")), ValueError, "spatial_scale"),
        (dict(output_size=2, sampling_ratio=1.5), TypeError, "sampling_ratio must be an int"),
    ],
)
def test_bad_parameters(kwargs, error, message):
    x, boxes = _good()
    with pytest.raises(error, match=message):
        impl.roi_align(x, boxes, **kwargs)


def test_unbounded_adaptive_grid_is_rejected():
    x, boxes = _good()
    boxes[1, 3:] = 1e30
    with pytest.raises(ValueError, match=r"row 1 .* adaptive sampling grid"):
        impl.roi_align(x, boxes, 2, sampling_ratio=0)
    # A fixed grid bounds the work, so the same box is fine there.
    assert torch.isfinite(impl.roi_align(x, boxes, 2, sampling_ratio=2)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to build a CUDA tensor")
def test_cuda_input_is_rejected():
    x, boxes = _good()
    with pytest.raises(ValueError, match="runs on the CPU"):
        impl.roi_align(x.cuda(), boxes.cuda(), 2)


def test_device_mismatch_is_rejected():
    x, boxes = _good()
    with pytest.raises(ValueError, match="are on device meta but input is on device cpu"):
        impl.roi_align(x, boxes.to("meta"), 2)
