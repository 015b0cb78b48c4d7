"""Zero sizes through our operators, forward and backward, against our definition and torchvision.

Our definition (``impl/ops.py``): the output is ``[K, C, h, w]``; it is empty
when K or C is 0 and zeros when a map has no pixels (H or W is 0: every
sample reads nothing); the gradient is zeros of the input's shape. A batch
index must lie in ``[0, N)``, so N = 0 admits only K = 0 (N = 0 with K > 0:
``ValueError`` naming row 0, ``test_operator_compile.py``).

torchvision 0.29.1 on the CPU (probed with ``properties.isolation``, one child process per case,
both layouts alike; ``h, w = 2, 3``; K > 0 means 3 RoIs on images 0 and 1):

=========================  =================================  ===============================
case (N, C, H, W; K)       torchvision                        ours
=========================  =================================  ===============================
N = 0, K = 0               [0, C, h, w], gradient zeros       the same
C = 0, K > 0               [K, 0, h, w], gradient zeros       the same
H = 0, K > 0               crash: SIGSEGV                     [K, C, h, w] zeros, gradient zeros
W = 0, K > 0               crash: SIGSEGV                     [K, C, h, w] zeros, gradient zeros
H = W = 0, K > 0           crash: SIGSEGV                     [K, C, h, w] zeros, gradient zeros
K = 0                      [0, C, h, w], gradient zeros       the same
C = 0, K = 0               [0, 0, h, w], gradient zeros       the same
H = 0, K = 0               [0, C, h, w], gradient zeros       the same
C = 0, H = 0, K > 0        [K, 0, h, w], gradient zeros       the same
N = C = H = W = K = 0      [0, 0, h, w], gradient zeros       the same
N = 0, K > 0               crash: SIGSEGV                     ValueError: boxes row 0 ... [0, 0)
=========================  =================================  ===============================
"""
import resource

import pytest
import torch
import torchvision

from roialign_suite import impl
from roialign_suite.properties import isolation

OPS = torch.ops.roialign_suite
OUTPUT = (2, 3)
ROIS = [[0, 1.0, 1.0, 4.0, 4.0], [1, 0.0, 0.0, 3.0, 2.0], [1, 2.0, 3.0, 4.0, 5.0]]

# name -> ((N, C, H, W), K, torchvision's behaviour); "result" means an output and a gradient.
CASES = {
    "N0-K0": ((0, 3, 5, 6), 0, "result"),
    "C0": ((2, 0, 5, 6), 3, "result"),
    "H0": ((2, 3, 0, 6), 3, "SIGSEGV"),
    "W0": ((2, 3, 5, 0), 3, "SIGSEGV"),
    "H0-W0": ((2, 3, 0, 0), 3, "SIGSEGV"),
    "K0": ((2, 3, 5, 6), 0, "result"),
    "C0-K0": ((2, 0, 5, 6), 0, "result"),
    "H0-K0": ((2, 3, 0, 6), 0, "result"),
    "C0-H0": ((2, 0, 0, 6), 3, "result"),
    "all-zero": ((0, 0, 0, 0), 0, "result"),
}
LAYOUTS = ["contiguous", "channels_last"]


def _input(shape, layout):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_()


def _ours(shape, k, layout):
    """Our output and the gradient of its sum (upstream ones) for one case."""
    x = _input(shape, layout)
    out = impl.roi_align(x, torch.tensor(ROIS[:k], dtype=torch.float64).reshape(k, 5), OUTPUT, 1.0, 2, True)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    return x, out, grad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(CASES))
def test_zero_sizes_forward_and_backward(name, layout):
    """``[K, C, h, w]`` zeros (empty when K or C is 0), gradient zeros of the input's shape, dtype
    and, when it has elements, layout."""
    shape, k, _ = CASES[name]
    x, out, grad = _ours(shape, k, layout)
    assert out.shape == (k, shape[1]) + OUTPUT and out.dtype == x.dtype and out.is_contiguous()
    assert torch.equal(out, torch.zeros_like(out)) and torch.equal(grad, torch.zeros_like(x))
    if x.numel():
        assert grad.stride() == x.stride()


@pytest.mark.parametrize("boxes", [[], [0], [0, 0], [0, 2]], ids=["no-images", "one-empty", "two-empty", "empty-then-2"])
def test_list_boxes_with_empty_lists(boxes):
    """List-form boxes with empty per-image lists: the rows of the non-empty ones, in order, equal to
    the ``Tensor[K, 5]`` form; images without boxes get zero gradient."""
    x = _input((2, 3, 5, 6), "contiguous")
    rois = torch.tensor(ROIS[1:], dtype=torch.float64)
    lists = [rois[:count, 1:] for count in boxes]
    out = impl.roi_align(x, lists, OUTPUT, 1.0, 2, True)
    k = sum(boxes)
    assert torch.equal(out, impl.roi_align(x, rois[:k], OUTPUT, 1.0, 2, True))
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert grad.shape == x.shape and not grad[0].any() and bool(grad[1].any()) == (k > 0)


def test_level_without_pixels_pools_zeros():
    """Multi-level op, a level with H = 0 between two others: its RoIs pool zeros and it gets a zero
    gradient; the other RoIs equal single-level roi_align on their level, bitwise, gradients too."""
    pyramid = [_input(shape, layout) for shape, layout in
               (((2, 3, 16, 20), "contiguous"), ((2, 3, 0, 10), "channels_last"), ((2, 3, 4, 5), "channels_last"))]
    scales = [0.5, 0.25, 0.125]
    rois = torch.tensor(ROIS + ROIS, dtype=torch.float64) * torch.tensor([1.0, 4, 4, 4, 4], dtype=torch.float64)
    levels = torch.tensor([0, 1, 2, 1, 0, 2])
    out = OPS.multilevel_roi_align(pyramid, rois, levels, scales, *OUTPUT, 2, True)
    grads = torch.autograd.grad(out, pyramid, torch.ones_like(out))
    assert torch.equal(out[levels == 1], torch.zeros(2, 3, *OUTPUT, dtype=torch.float64))
    assert torch.equal(grads[1], torch.zeros_like(pyramid[1]))
    for level in (0, 2):
        alone = OPS.roi_align(pyramid[level], rois[levels == level], scales[level], *OUTPUT, 2, True)
        assert torch.equal(out[levels == level], alone)
        (expected,) = torch.autograd.grad(alone, pyramid[level], torch.ones_like(alone))
        assert torch.equal(grads[level], expected) and grads[level].stride() == pyramid[level].stride()


def _torchvision_on(shape, k, layout, rois) -> dict:
    """torchvision's output and gradient on one case: shapes and non-zero counts (run isolated: some crash)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = torchvision.ops.roi_align(x, torch.tensor(rois, dtype=torch.float64).reshape(k, 5), OUTPUT, 1.0, 2, True)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    return {"status": "result", "out": list(out.shape), "out_nonzero": int(out.count_nonzero()),
            "grad": list(grad.shape), "grad_nonzero": int(grad.count_nonzero())}


def _probe_torchvision(cases):
    """torchvision's behaviour per ``(name, shape, K, layout)``, each in its own child process."""
    found = {}
    for name, shape, k, layout, rois in cases:
        outcome = isolation.run_isolated(_torchvision_on, shape, k, layout, rois)
        if outcome.kind == isolation.RETURNED:
            status = outcome.value
        elif outcome.kind == isolation.RAISED:
            status = {"status": f"{type(outcome.error).__name__}: {str(outcome.error).splitlines()[0]}"}
        else:
            status = {"status": outcome.signal or outcome.describe()}
        found[f"{name}/{layout}"] = status
    return found


def test_torchvision_on_zero_sizes_is_as_recorded():
    """torchvision's behaviour on each case is the module docstring's table (SIGSEGV where it reads
    a map without pixels, or image 0 of a batch of none), and where it gives a result, ours equals it:
    same output and gradient shapes, both all zeros. Fails when torchvision changes: update the table."""
    cases = [(name, list(shape), k, layout, ROIS[:k]) for name, (shape, k, _) in CASES.items() for layout in LAYOUTS]
    cases += [("N0-K3", [0, 3, 5, 6], 3, layout, ROIS) for layout in LAYOUTS]
    found = _probe_torchvision(cases)
    recorded = {f"{name}/{layout}": behaviour for name, (_, _, behaviour) in CASES.items() for layout in LAYOUTS}
    recorded.update({f"N0-K3/{layout}": "SIGSEGV" for layout in LAYOUTS})
    assert {key: result["status"] for key, result in found.items()} == recorded
    for name, (shape, k, behaviour) in CASES.items():
        for layout in LAYOUTS:
            if behaviour == "result":
                theirs = found[f"{name}/{layout}"]
                _, out, grad = _ours(shape, k, layout)
                assert (theirs["out"], theirs["grad"]) == (list(out.shape), list(grad.shape))
                assert theirs["out_nonzero"] == theirs["grad_nonzero"] == 0
