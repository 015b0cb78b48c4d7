"""The main job's check: every registered implementation against the float64 reference.

``roialign-suite verify`` builds one default workload (2 images, a
stride-8 map of a 400x608 image, RoIs of every size, crossing borders,
degenerate and inverted ones), runs each implementation forward and backward
in float32, float64, float16 and bfloat16 (the dtypes its record lists) and
both pixel conventions, and prints the worst absolute error against the
reference. Third-party kernels run in a worker process
(``properties/isolation.py``): one that dies is a failed row saying how, and
the table goes on. It exits non-zero when an error is above the bound for its
dtype or a kernel died, so it can be scripted.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from roialign_suite import options, reference
from roialign_suite.implementations import registry
from roialign_suite.properties import isolation
from roialign_suite.properties.checks import assert_backward_within_bound, assert_forward_within_bound
from roialign_suite.properties.strategies import case_of_tensors
from roialign_suite.properties.strategies import RoIAlignCase

# Worst absolute error allowed on this workload (features in [0, 4), the
# reference fed the same dtype-rounded inputs): float64 sums of <= 16 terms
# rounded at 1.1e-16 relative; float32 the same at 6e-8 relative, plus (for
# torchvision, which computes coordinates in float32) sample positions off by
# ~2^-24 * 700 px * 1/8 ~ 5e-6 px times a slope <= 4 per pixel. Both bounds
# keep a wide margin over that rounding and stay far below a real bug (a
# misplaced sample moves a value by O(0.1)).
BOUND = {torch.float64: 1e-10, torch.float32: 1e-4}
# The halves are held to the bound derived for each implementation's arithmetic
# (properties/tolerances.py, per element): no single number fits both a kernel
# that rounds once to the half (ours: within half a half-ulp of the values) and
# one that computes coordinates and sums in the half (torchvision CPU float16).
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
DERIVED = float("inf")  # Row.bound of a row checked against the derived bound


@dataclass
class Row:
    implementation: str
    dtype: str
    aligned: bool
    forward_error: float
    backward_error: float
    seconds: float
    ok: bool
    bound: float
    # How the kernel died on the workload (an isolated call: ``isolation.Crash``), or None.
    death: Optional[str] = None


def default_workload(num_rois: int = 96, channels: int = 8, seed: int = 0):
    """``(features [2, C, 50, 76], boxes [K, 5])`` in image pixels at stride 8."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.rand(2, channels, 50, 76, generator=gen, dtype=torch.float64) * 4
    centre = torch.rand(num_rois, 2, generator=gen, dtype=torch.float64) * torch.tensor([608.0, 400.0])
    size = torch.exp(torch.rand(num_rois, 2, generator=gen, dtype=torch.float64) * 6.0)  # 1 .. 400 px
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    boxes[:4] = torch.tensor(
        [[-30.0, -20.0, 700.0, 500.0], [100.0, 80.0, 100.0, 80.0], [300.0, 200.0, 250.0, 150.0], [0.0, 0.0, 607.0, 399.0]],
        dtype=torch.float64,
    )
    index = torch.randint(0, 2, (num_rois, 1), generator=gen).to(torch.float64)
    return features, torch.cat([index, boxes], dim=1)


def within_derived_bound(impl: registry.Implementation, x, b, aligned, out, grad, grad_out) -> bool:
    """Whether ``out`` (and ``grad``, unless None) are within ``tolerances``' bounds for ``impl``'s arithmetic."""
    case = case_of_tensors(x, b, (7, 7), 0.125, 2, aligned)
    try:
        assert_forward_within_bound(impl, case, out, x.detach())
        if grad is not None:
            assert_backward_within_bound(impl, case, grad_out, grad)
    except AssertionError:
        return False
    return True


def check(impl: registry.Implementation, features, boxes, dtype, aligned, expected, expected_grad, grad_out) -> Row:
    x = features.to(dtype).detach().requires_grad_()
    b = boxes.to(dtype)
    start = time.perf_counter()
    out = impl.roi_align(x, b, 7, 0.125, 2, aligned)
    backward_error = float("nan")
    if getattr(impl, "differentiable", True):
        out.backward(grad_out.to(dtype))
        backward_error = (x.grad.double() - expected_grad).abs().max().item()
    seconds = time.perf_counter() - start
    forward_error = (out.detach().double() - expected).abs().max().item()
    worst = max(forward_error, 0.0 if backward_error != backward_error else backward_error)
    name = str(dtype).replace("torch.", "")
    if dtype not in BOUND:
        ok = within_derived_bound(impl, x, b, aligned, out.detach(), x.grad, grad_out.to(dtype))
        return Row(impl.name, name, aligned, forward_error, backward_error, seconds, ok, DERIVED)
    # An implementation that computes in a lower precision than the input's
    # (a documented divergence, docs/conformance.md) is held to that precision's bound.
    bound = BOUND[impl.compute_dtype or dtype]
    return Row(impl.name, name, aligned, forward_error, backward_error, seconds, worst <= bound, bound)


def recorded_divergences(impl: registry.Implementation, boxes, dtype, aligned, shape) -> List[int]:
    """Rows of ``boxes`` a divergence recorded for ``impl`` concerns (its record's rules)."""
    case = RoIAlignCase(shape=tuple(shape), boxes=tuple(tuple(b) for b in boxes.tolist()), output_size=(7, 7),
                        spatial_scale=0.125, sampling_ratio=2, aligned=aligned, dtype=str(dtype).removeprefix("torch."))
    return impl.divergent_boxes(case)


def run(rows_out: List[Row], targets: Sequence[str] = (), device: str = "cpu") -> bool:
    """Every built-in (but the definition) and each ``MODULE:ATTR`` target; prints the table, True if all are ok.

    Boxes a divergence recorded for an implementation concerns (``torchvision-python``'s
    out-of-map samples) are left out of its rows, and the rows say so."""
    features, all_boxes = default_workload()
    all_grad_out = torch.randn(all_boxes.shape[0], features.shape[1], 7, 7, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(1))
    skipped, left_out, oracles = [], {}, {}
    for aligned in (False, True):
        for dtype in DTYPES:
            for impl in registry.builtin() + [registry.target(spec, device) for spec in targets]:
                if impl.definition:
                    continue
                if impl.unavailable:
                    skipped.append(f"{impl.name}: {impl.unavailable}")
                    continue
                if dtype not in impl.dtypes:
                    skipped.append(f"{impl.name} on {dtype}: its record does not list that dtype")
                    continue
                divergent = recorded_divergences(impl, all_boxes, dtype, aligned, features.shape)
                keep = sorted(set(range(len(all_boxes))) - set(divergent))
                if divergent:
                    left_out[impl.name] = max(left_out.get(impl.name, 0), len(divergent))
                boxes, grad_out = all_boxes[keep], all_grad_out[keep]
                key = (aligned, dtype, tuple(keep))
                if key not in oracles:
                    # The oracle sees exactly the values the implementation sees: the
                    # inputs rounded to dtype, then widened back to float64.
                    x = features.to(dtype).double().detach().requires_grad_()
                    expected = reference.roi_align(x, boxes.to(dtype).double(), 7, 0.125, 2, aligned)
                    expected.backward(grad_out)
                    oracles[key] = (expected.detach(), x.grad)
                if isolation.isolates(impl):
                    impl = isolation.isolated(impl)
                try:
                    rows_out.append(check(impl, features, boxes, dtype, aligned, *oracles[key], grad_out))
                except isolation.Crash as death:
                    nan = float("nan")
                    rows_out.append(Row(impl.name, str(dtype).removeprefix("torch."), aligned, nan, nan, nan, False,
                                        nan, death=death.outcome.describe() if death.outcome else str(death)))
                    print(f"{impl.name}: {death}", file=sys.stderr)
    print(f"RoIAlign vs the float64 reference: {boxes.shape[0]} RoIs, features {tuple(features.shape)}, "
          "output 7x7, spatial_scale 1/8, sampling_ratio 2")
    header = f"{'implementation':<20}{'dtype':<9}{'aligned':<9}{'fwd max|err|':>14}{'bwd max|err|':>14}{'seconds':>9}  verdict"
    print(header)
    print("-" * len(header))
    for r in rows_out:
        if r.death:
            print(f"{r.implementation:<20}{r.dtype:<9}{str(r.aligned):<9}{'':>37}  FAIL ({r.death})")
            continue
        if r.bound == DERIVED:
            note = " (derived bound)"
        elif r.bound == BOUND[getattr(torch, r.dtype)]:
            note = ""
        else:
            note = f" (bound {r.bound:.0e}: computes in lower precision)"
        verdict = ("ok" if r.ok else "FAIL") + note
        backward = "fwd only" if r.backward_error != r.backward_error else f"{r.backward_error:.3e}"
        print(f"{r.implementation:<20}{r.dtype:<9}{str(r.aligned):<9}{r.forward_error:>14.3e}{backward:>14}{r.seconds:>9.3f}  {verdict}")
    for line in sorted(set(skipped)):
        print(f"skipped {line}")
    for name, count in sorted(left_out.items()):
        print(f"{name}: up to {count} of {all_boxes.shape[0]} boxes left out (its record's divergences concern them)")
    return all(r.ok for r in rows_out)


def main(argv=None) -> int:
    options.importable_from_cwd()
    parser = options.OneLineParser(prog="roialign-suite verify", description=__doc__.splitlines()[0])
    options.add_to_argparse(parser, options.VERIFY)
    args = parser.parse_args(argv)
    isolation.configure(args.roialign_isolate, args.roialign_call_timeout)
    rows: List[Row] = []
    try:
        return 0 if run(rows, args.roialign_target or [], args.roialign_device or "cpu") else 1
    finally:
        isolation.close_workers()


if __name__ == "__main__":
    sys.exit(main())
