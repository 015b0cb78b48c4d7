"""Apache TVM's RoIAlign (``apache-tvm`` 0.27) behind ``torchvision.ops.roi_align``'s signature.

Two implementations of the same TE compute (``tvm.topi.vision.roi_align_nchw``):

- ``tvm-topi``: ``topi.vision.roi_align`` turned into a PrimFunc
  (``te.create_prim_func``) and compiled with ``tvm.compile(target="llvm")``.
- ``tvm-relax-onnx``: a one-node ONNX ``RoiAlign`` model (opset 16,
  ``implementations.onnx_runtimes.roi_align_model``) imported with
  ``tvm.relax.frontend.onnx.from_onnx``, compiled with ``tvm.compile`` and run
  on the Relax VM.

Conversions, and nothing else:

- Arguments are checked by the suite's front end (``reference.inputs``): bad
  input raises a ``TypeError``/``ValueError`` naming the argument or box row.
- Boxes: torchvision's ``Tensor[K, 5]`` or per-image lists of ``Tensor[L, 4]``
  become rows ``(batch_index, x1, y1, x2, y2)`` (image pixels) of the input's
  dtype: topi's ``rois [K, 5]`` as they are; for ONNX ``rois [K, 4]`` and
  ``batch_indices [K]`` int64. All RoIs go in one call.
- Layout: the input is made contiguous NCHW (a copy for any other strides)
  and handed over as a numpy array; the output comes back as a ``[K, C, h, w]``
  CPU tensor of the input's dtype. No dtype casts (float32 and float64 only).
  topi writes into an output buffer the caller allocates: the adapter fills it
  with NaN first, so an element the kernel leaves unwritten reads NaN (the
  Relax VM allocates its own, whose unwritten elements hold stale memory).
- ``aligned``: torchvision's aligned=True is "scale, then shift by -0.5 pixel,
  no 1-pixel clamp". topi's ``aligned`` only drops the clamp; the shift is the
  caller's, and topi scales inside the kernel, so there is no way to shift
  after its scaling. For aligned=True the adapter therefore computes
  ``x * spatial_scale - 0.5`` in the input's dtype (as torchvision's kernel
  does) and passes ``spatial_scale=1`` (an exact multiplication); for
  aligned=False the raw boxes and the scale go to the kernel. The ONNX path
  uses ``coordinate_transformation_mode`` (``half_pixel`` / ``output_half_pixel``)
  and leaves the shift to TVM's importer.
- ``sampling_ratio <= 0`` is adaptive in both (ONNX: 0).

Compiled functions are cached per configuration (dtype, pooled size,
spatial_scale, sampling_ratio, aligned): shapes (N, C, H, W, K) are symbolic,
so one compilation serves every shape. Forward only: TVM registers no gradient
for roi_align. ``tvm`` is imported lazily (``pip install 'roialign-suite[tvm]'``).
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from roialign_suite.implementations.calling import PerConfiguration
from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.roi_align import check_geometry

DTYPES = (torch.float32, torch.float64)
_TVM_DTYPE = {torch.float32: "float32", torch.float64: "float64"}
# (dtype, pooled, spatial_scale, sampling_ratio, aligned)
ConfigKey = Tuple[torch.dtype, Tuple[int, int], float, int, bool]


def unavailable() -> Optional[str]:
    """Why the TVM adapters cannot run here, or None."""
    if importlib.util.find_spec("tvm") is None:
        return "apache-tvm not installed (pip install 'roialign-suite[tvm]')"
    return None


def relax_onnx_unavailable() -> Optional[str]:
    """Why the Relax ONNX adapter cannot run here (it also needs ``onnx``), or None."""
    missing = unavailable()
    if missing is None and importlib.util.find_spec("onnx") is None:
        return "onnx not installed (pip install 'roialign-suite[tvm]')"
    return missing


def _compile_topi(key: ConfigKey) -> Callable:
    import tvm
    from tvm import te, topi

    dtype, pooled, spatial_scale, sampling_ratio, aligned = key
    n, c, h, w, k = (tvm.tirx.Var(name, "int64") for name in ("N", "C", "H", "W", "K"))
    data = te.placeholder((n, c, h, w), _TVM_DTYPE[dtype], name="data")
    rois = te.placeholder((k, 5), _TVM_DTYPE[dtype], name="rois")
    out = topi.vision.roi_align(data, rois, pooled, spatial_scale, "avg", sampling_ratio, aligned, "NCHW")
    compiled = tvm.compile(te.create_prim_func([data, rois, out]), target="llvm")
    device = tvm.cpu()

    def run(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # NaN-filled: an output element the kernel leaves unwritten shows as NaN, not as stale memory.
        result = tvm.runtime.tensor(np.full((rows.shape[0], x.shape[1]) + pooled, np.nan, x.dtype), device)
        compiled(tvm.runtime.tensor(x, device), tvm.runtime.tensor(rows, device), result)
        return result.numpy()

    return run


def _compile_relax_onnx(key: ConfigKey) -> Callable:
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from roialign_suite.implementations.onnx_runtimes import onnx_sampling_ratio, roi_align_model

    dtype, pooled, spatial_scale, sampling_ratio, aligned = key
    model = onnx.load_from_string(roi_align_model(dtype, pooled, spatial_scale, sampling_ratio, aligned))
    module = from_onnx(model, opset=16, keep_params_in_input=False)
    vm = relax.VirtualMachine(tvm.compile(module, target="llvm"), tvm.cpu())
    main = vm["main"]
    assert onnx_sampling_ratio(sampling_ratio) >= 0

    def run(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rois = np.ascontiguousarray(rows[:, 1:])
        batch_indices = rows[:, 0].astype(np.int64)
        return main(tvm.runtime.tensor(x), tvm.runtime.tensor(rois), tvm.runtime.tensor(batch_indices)).numpy()

    return run


class TVMRoIAlign:
    """One TVM path as a callable with ``torchvision.ops.roi_align``'s signature (CPU tensors in and out)."""

    def __init__(self, name: str, compile_fn: Callable[[ConfigKey], Callable], shift_in_adapter: bool):
        self.__name__ = name
        self._shift_in_adapter = shift_in_adapter
        self.compiled = PerConfiguration(compile_fn)

    def __repr__(self) -> str:
        return f"TVMRoIAlign({self.__name__!r})"

    def __call__(self, input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
        args = inputs.roi_align_args(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, dtypes=DTYPES)
        if input.device.type != "cpu":
            raise ValueError(f"{self.__name__} takes CPU tensors, got input on {input.device}")
        check_geometry(args.rois, args.output_size, args.spatial_scale, args.sampling_ratio, args.aligned)
        # rois are float64 holding the caller's exact values: to the input's dtype exactly.
        rows = args.rois.to(input.dtype)
        scale = args.spatial_scale
        if args.aligned and self._shift_in_adapter:
            # torchvision's aligned: x * scale - 0.5, in the input's dtype; the kernel then scales by 1 (exact).
            scale_in_dtype = torch.tensor(scale, dtype=input.dtype)
            rows = torch.cat([rows[:, :1], rows[:, 1:] * scale_in_dtype - 0.5], dim=1)
            scale = 1.0
        key = (input.dtype, args.output_size, scale, args.sampling_ratio, args.aligned)
        run = self.compiled(key)
        out = run(input.detach().contiguous().numpy(), rows.contiguous().numpy())
        return torch.from_numpy(np.ascontiguousarray(out)).to(input.dtype)


roi_align_topi = TVMRoIAlign("tvm-topi", _compile_topi, shift_in_adapter=True)
roi_align_relax_onnx = TVMRoIAlign("tvm-relax-onnx", _compile_relax_onnx, shift_in_adapter=False)
roi_align = roi_align_topi


def _empty_grid(case, geometry) -> bool:
    from roialign_suite.implementations.records import adaptive_grid_may_round_empty

    # Inverted along both axes the product is positive, yet neither loop runs. TVM computes
    # coordinates in the input's dtype.
    return (geometry.grid_h <= 0 or geometry.grid_w <= 0
            or adaptive_grid_may_round_empty(case, geometry, getattr(torch, case.dtype)))


def _aligned_adaptive(case) -> bool:
    return case.aligned and case.sampling_ratio <= 0


def _divergences():
    """(topi's, Relax ONNX's) documented divergences; built lazily (the record classes import the suite)."""
    from roialign_suite.implementations.records import ONNX_SCALE_IN_FLOAT32, Divergence

    empty_grid_unwritten = Divergence(
        "tvm-empty-grid-output-unwritten",
        "aligned=True, adaptive grid, a box of zero width/height or inverted (along one or both "
        "axes): the grid ceil(roi / pooled) along an axis is <= 0 samples and the definition (and torchvision) averages to 0; TVM lowers "
        "te.sum's init inside the reduction loops, so with no iterations the output is never written: "
        "topi leaves the caller's buffer as it was (NaN here), the Relax VM returns stale memory "
        "(not reproducible: pinned on tvm-topi only)",
        "known_divergences/tvm_topi_empty_sample_grid_*.json",
        boxes=_empty_grid,
        cases=_aligned_adaptive,
    )
    half_pixel_shift_before_scale = Divergence(
        "tvm-relax-onnx-half-pixel-shift-before-scale",
        "aligned=True (ONNX half_pixel) with spatial_scale != 1: the definition (and ONNX RoiAlign-16) samples "
        "from x1 * scale - 0.5; TVM's ONNX importer adds -0.5 to the rois before the kernel scales them, "
        "(x1 - 0.5) * scale: every sample moves by 0.5 * (1 - scale) feature pixels",
        "known_divergences/tvm_relax_onnx_half_pixel_shift_before_scale.json",
        cases=lambda case: case.aligned and case.spatial_scale != 1.0,
    )
    return (empty_grid_unwritten,), (empty_grid_unwritten, half_pixel_shift_before_scale, ONNX_SCALE_IN_FLOAT32)


def records():
    """``tvm-topi`` and ``tvm-relax-onnx`` (see the module docstring).

    Coordinates and sums: topi computes sample coordinates in the rois' dtype
    (= the input's) and accumulates te.sum in the input's dtype, each sample
    divided by the count before it is added; the Relax ONNX importer lowers to
    the same compute.
    """
    from roialign_suite.implementations.records import Implementation

    topi, relax_onnx = _divergences()
    common = dict(differentiable=False, dtypes=DTYPES, packages=("apache-tvm",), xfails="tvm.txt", preload=("tvm",))
    return [
        Implementation("tvm-topi", roi_align_topi, unavailable=unavailable(), divergences=topi, **common),
        Implementation("tvm-relax-onnx", roi_align_relax_onnx, unavailable=relax_onnx_unavailable(),
                       divergences=relax_onnx, **common),
    ]
