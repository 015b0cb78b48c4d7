"""The operator contract: what any RoIAlign accepts and returns, compiled or not, whatever its numbers.

torchvision's ``roi_align`` is the contract (each rule checked on torchvision CPU):

- **output**: a tensor of the input's dtype and device, shape ``[K, C, h, w]``,
  contiguous (torchvision allocates it so whatever the input's layout);
- **gradient**: ``x.grad`` of ``x``'s dtype, shape and device, laid out as
  autograd's layout contract lays out a leaf's gradient (``x``'s strides where
  ``x`` is non-overlapping and dense, so channels_last gives channels_last;
  contiguous otherwise): :func:`obeys_layout_contract`;
- **dtypes**: every dtype the implementation's record lists is accepted; an
  integer input is refused with an exception;
- **zero sizes** (N, C, H, W or K = 0): the values are the definition's
  (``reference.roi_align``: empty, or zeros where H or W is 0; a zero
  gradient). A third-party kernel may instead refuse such a case with an
  exception (noted); ours must compute it;
- **compiled**: ``torch.compile(target)`` computes what the target computes
  (:func:`check_compiled_matches_eager`);
- **operator**: a record naming a ``torch.library`` operator passes
  ``torch.library.opcheck`` (:func:`check_opcheck`).

Each check takes one implementation and one case; the properties
(``properties/test_operator_contract.py``) draw the cases and run third-party
zero-size cases in a child process (``properties.findings``).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
from hypothesis import assume
from torch import Tensor

from roialign_suite import reference
from roialign_suite.properties.checks import case_for, outside_divergences
from roialign_suite.properties.strategies import RoIAlignCase, note_if_testing, with_layout, zero_sizes
from roialign_suite.properties.tolerances import (
    UNIT_ROUNDOFF,
    Oracle,
    assert_within,
    forward_tolerance,
    rounding_jumps,
)


# --- inputs ---------------------------------------------------------------------------

def contract_inputs(case: RoIAlignCase, dtype: torch.dtype, device: str = "cpu") -> Tuple[Tensor, Tensor]:
    """``(features, rois)`` of ``case`` in ``dtype`` on ``device``: the case's float64 values
    rounded to ``dtype`` and stored with its layout (on another device, as ``Tensor.to`` keeps it).
    A case whose boxes ``dtype`` cannot hold (float16 overflows past 65504) is not an input: rejected."""
    rois = case.rois("float64").to(dtype)
    if not bool(torch.isfinite(rois).all()):
        assume(False)  # only then: a hand-written case outside a property calls this too
    features = with_layout(case.features("float64").contiguous().to(dtype), case.layout)
    return features.to(device), rois.to(device)


def grad_output(case: RoIAlignCase, dtype: torch.dtype, device: str, seed: int) -> Tensor:
    """A ``[K, C, h, w]`` upstream gradient of ``dtype`` from ``seed``."""
    shape = (case.num_boxes, case.shape[1]) + tuple(case.output_size)
    values = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return values.to(dtype=dtype, device=device)


def non_overlapping_and_dense(t: Tensor) -> bool:
    """c10's ``is_non_overlapping_and_dense``: the elements fill one block of memory, in some order of dimensions."""
    if t.dim() == 1:
        return t.shape[0] < 2 or t.stride(0) == 1
    needed = 1
    for dim in sorted(range(t.dim()), key=lambda d: (t.stride(d), d)):
        if t.shape[dim] == 1:
            continue
        if t.stride(dim) != needed:
            return False
        needed *= t.shape[dim]
    return True


def obeys_layout_contract(grad: Tensor, variable: Tensor) -> bool:
    """autograd's layout contract for a leaf's ``.grad`` (``torch/csrc/autograd/utils/grad_layout_contract.h``):
    ``variable``'s strides (sizes 1 aside) where it is non-overlapping and dense, else contiguous.
    A gradient without elements keeps it whatever its strides: it has no memory layout to
    observe (the strides of an empty tensor are arbitrary; torch's own differ by constructor)."""
    if grad.numel() == 0:
        return True
    if non_overlapping_and_dense(variable):
        return all(g == v if size != 1 else g != 0
                   for size, g, v in zip(grad.shape, grad.stride(), variable.stride()))
    return grad.is_contiguous()


# --- output and gradient --------------------------------------------------------------

def check_output_contract(implementation, case: RoIAlignCase, dtype: torch.dtype, grad_seed: int = 0) -> None:
    """``implementation`` (its ``native`` call, on its device) on ``case`` in ``dtype``: the output
    and (if differentiable) ``x.grad`` keep the contract of the module docstring; on a zero-size
    case also their values. A third-party kernel may refuse a zero-size case with an exception."""
    case = case_for(implementation, case)
    device = implementation.device
    features, rois = contract_inputs(case, dtype, device)
    x = features.detach().requires_grad_(implementation.differentiable)
    zero = zero_sizes(case)
    try:
        out = implementation.timed_call(x, rois, *case.params())
    except Exception as refusal:
        if implementation.ours or not zero:
            raise
        note_if_testing(f"{implementation.name} refused a case with {zero}: {type(refusal).__name__}: {refusal}")
        return
    expected_shape = (case.num_boxes, case.shape[1]) + tuple(case.output_size)
    assert isinstance(out, Tensor), f"{implementation.name} returned {type(out).__name__}, not a Tensor"
    assert out.dtype == dtype, f"output dtype {out.dtype}, expected the input's {dtype}"
    assert tuple(out.shape) == expected_shape, f"output shape {list(out.shape)}, expected [K, C, h, w] = {list(expected_shape)}"
    assert out.device == x.device, f"output on {out.device}, input on {x.device}"
    assert out.is_contiguous(), f"output strides {out.stride()} are not contiguous (torchvision's output is)"
    if zero:
        defined = reference.roi_align(features.detach().cpu().double(), rois.cpu().double(), *case.params())
        # Rows a recorded divergence concerns (the ONNX runtimes' unwritten buffer on an empty map)
        # are that divergence's to show (its corpus cases), not a breach of the contract.
        rows = implementation.rows_outside_divergences(case)
        got = out.detach().cpu().double()[rows]
        assert torch.equal(got, defined[rows]), (
            f"with {zero} the definition gives {defined[rows].flatten().tolist()}, got {got.flatten().tolist()}")
    if not implementation.differentiable:
        return
    assert out.requires_grad, f"{implementation.name}'s record says differentiable, but its output has no gradient"
    out.backward(grad_output(case, dtype, device, grad_seed))
    grad = x.grad
    assert grad is not None, f"{implementation.name}'s record says differentiable, but no gradient reaches the input"
    assert grad.dtype == dtype and grad.device == x.device and grad.shape == x.shape, (
        f"x.grad is {grad.dtype} {list(grad.shape)} on {grad.device}; x is {dtype} {list(x.shape)} on {x.device}")
    assert obeys_layout_contract(grad, x), (
        f"x.grad strides {grad.stride()} break autograd's layout contract for x of strides {x.stride()} ({case.layout})")
    if zero:
        assert not bool(grad.any()), f"with {zero} the gradient must be 0, got {grad.flatten().tolist()}"


def replayed_property(implementation) -> str:
    """The corpus property that reruns what these checks run (a gradient property also runs the forward)."""
    return "backward_matches_reference" if implementation.differentiable else "forward_matches_reference"


def check_refuses_integer_input(implementation, dtype: torch.dtype = torch.int64) -> None:
    """An integer map is refused with an exception (torchvision raises "not implemented for 'Long'")."""
    features = torch.arange(2 * 3 * 5 * 6).reshape(2, 3, 5, 6).to(dtype=dtype, device=implementation.device)
    rois = torch.tensor([[0, 1, 1, 3, 4], [1, 0, 0, 5, 4]], dtype=dtype, device=implementation.device)
    try:
        out = implementation.timed_call(features, rois, (2, 2), 1.0, 2, False)
    except Exception:
        return
    raise AssertionError(f"{implementation.name} accepted {dtype} input and returned {out.dtype} "
                         f"{out.flatten()[:8].tolist()}...; torchvision's roi_align refuses integer maps")


# --- torch.compile ------------------------------------------------------------------------

# One compiled callable per (implementation, dtype, aligned, adaptive grid): the choices
# dynamo guards on, so that each is compiled once per run and reused by every example.
_COMPILED: Dict[tuple, Callable] = {}
# Graphs one code object may compile before dynamo silently falls back to eager: above the
# keys a run can draw (4 dtypes x 2 conventions x 2 grid kinds), times the layouts.
RECOMPILE_LIMIT = 64


def compile_dtypes(implementation) -> List[torch.dtype]:
    """The record's dtypes :func:`check_compiled_matches_eager` can check: all for an operator
    (bitwise), else those whose unit roundoff its bound knows."""
    return [d for d in implementation.dtypes if implementation.operator is not None or d in UNIT_ROUNDOFF]


def compiled(implementation, dtype: torch.dtype, aligned: bool, adaptive: bool) -> Callable:
    """``torch.compile`` (Inductor, ``dynamic=True``) of a function that calls the implementation's native
    call, as a model's forward calls it (a kernel marked ``torch.compiler.disable`` then runs eagerly
    between graphs; compiled directly, torch 2.14 traces into it anyway), cached per key."""
    key = (implementation.name, dtype, aligned, adaptive)
    if key not in _COMPILED:
        target = implementation.timed_call

        def model_forward(*args):
            return target(*args)

        _COMPILED[key] = torch.compile(model_forward, dynamic=True)
    return _COMPILED[key]


def check_compiled_matches_eager(implementation, case: RoIAlignCase, dtype: torch.dtype) -> None:
    """``torch.compile(target)`` gives the target's eager output: bitwise when the target is a
    ``torch.library`` operator (the record's ``operator``: Inductor cannot look inside it, so the
    same kernel runs on the same values), else within the bound derived below.

    Outside its recorded divergences the target is a RoIAlign: each bin a sum over ``n = 4 *
    grid_h * grid_w`` taps ``w f / count`` with non-negative weights, so its eager output on
    ``|x|`` is ``M = sum |w f| / count``. Eager and compiled evaluate the same real numbers in
    different orders (Inductor re-associates reductions and may contract ``a * b + c``), each
    within ``forward_tolerance`` of the exact value (summation ``gamma(n) M``, misplaced
    coordinates, output rounding, in the record's arithmetic), so they differ by at most twice
    that; plus where rounding may move a sample across a discontinuity (an adaptive grid near
    an integer, a sample near ``-1`` or the far edge), the jump ``rounding_jumps`` allows, in
    the dtype the coordinates are computed in (float64 included: compiled code may round its
    coordinates differently from eager). Boxes a recorded divergence concerns are left out
    (torchvision's pure-PyTorch kernel gives out-of-map samples negative weights)."""
    case = case_for(implementation, outside_divergences(implementation, case))
    features, rois = contract_inputs(case, dtype, implementation.device)
    eager = implementation.timed_call(features, rois, *case.params())
    call = compiled(implementation, dtype, case.aligned, case.sampling_ratio <= 0)
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        result = call(features, rois, *case.params())
    assert result.dtype == eager.dtype and result.shape == eager.shape, (
        f"compiled: {result.dtype} {list(result.shape)}; eager: {eager.dtype} {list(eager.shape)}")
    if implementation.operator is not None:
        assert torch.equal(result, eager), (
            f"{implementation.name} is the operator {implementation.operator}: compiled and eager must agree bitwise; "
            f"largest difference {(result.double() - eager.double()).abs().max().item():.3g}")
        return
    magnitude = implementation.timed_call(features.abs(), rois, *case.params()).double().cpu()
    oracle = Oracle(eager.double().cpu(), magnitude)
    arith = implementation.arithmetic(dtype)
    features64 = features.double().cpu()
    bound = 2 * forward_tolerance(case, oracle, arith, features64)
    assert_within(result.cpu(), oracle.value, bound, f"{implementation.name} compiled vs eager",
                  rounding_jumps(case, arith.coordinates, features64))


# --- torch.library.opcheck ----------------------------------------------------------------

def check_opcheck(implementation, case: RoIAlignCase, dtype: torch.dtype) -> None:
    """``torch.library.opcheck`` of the record's ``operator`` on ``case`` (schema, autograd
    registration, fake tensor, AOT dispatch with dynamic shapes), the input requiring grad
    where the record says differentiable."""
    case = case_for(implementation, case)
    features, rois = contract_inputs(case, dtype, implementation.device)
    x = features.detach().requires_grad_(implementation.differentiable)
    (pooled_height, pooled_width), spatial_scale, sampling_ratio, aligned = case.params()
    if _torch_cannot_clone(x):
        # torch 2.14's opcheck clones each input through torch._dynamo.utils.clone_input, which
        # sizes the copy as sum((size - 1) * stride) + 32 elements: negative for a map with two
        # zero dimensions ([0, 0, 4, 8] contiguous gives -1), and test_schema,
        # test_autograd_registration and test_faketensor then raise for any operator
        # (torchvision's too). A map without elements has no layout to keep: the same map with
        # zero strides clones, and every check runs on it.
        x = torch.empty_strided(x.shape, (0,) * x.dim(), dtype=x.dtype, device=x.device).requires_grad_(
            x.requires_grad)
    torch.library.opcheck(implementation.operator,
                          (x, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned))


def _torch_cannot_clone(tensor: Tensor) -> bool:
    """Whether ``torch._dynamo.utils.clone_input`` fails on ``tensor`` (its size formula goes negative)."""
    return sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride())) + 32 < 0
