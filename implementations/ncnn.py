"""ncnn's ``ROIAlign`` layer (Tencent/ncnn, PyPI ``ncnn``) behind ``torchvision.ops.roi_align``'s signature.

The kernel (``src/layer/roialign.cpp``) pools ONE RoI of ONE image per forward:
its inputs are the image as a ``[C, H, W]`` blob and a 4-value blob
``(x1, y1, x2, y2)`` in image pixels (it multiplies by ``spatial_scale``
itself and has no batch index); its output is ``[C, pooled_h, pooled_w]``.
Its parameters, written into a one-layer param string and cached per
configuration: ``0=pooled_w 1=pooled_h 2=spatial_scale 3=sampling_ratio
4=aligned 5=version``. We use ``version=1``, torchvision's (detectron2's)
semantics: a ``sampling_ratio``-per-axis grid of bilinear samples per bin
(``ceil(roi / pooled)`` where ``sampling_ratio <= 0``), samples outside
``[-1, H] x [-1, W]`` count as 0, the sum divided by ``max(grid_h * grid_w, 1)``.
``version=0`` (ncnn's legacy layer) would instead clamp each bin to the map
``[0, H] x [0, W]`` first, size an adaptive grid from the clamped bin
(``ceil(hend - hstart)``), spread the samples by the unclamped bin size from
the clamped start, and give 0 for a bin emptied by the clamp.

Conversions, and nothing else (the arithmetic is the layer's own):

- ``boxes``: either torchvision form is checked by the suite's own front end
  (``reference.inputs``: a clear error naming the argument or row) and
  becomes rows ``(batch_index, x1, y1, x2, y2)``; row ``k`` feeds image
  ``batch_index`` (a ``[C, H, W]`` slice) and ``(x1, y1, x2, y2)`` as float32
  to the ``k``-th forward, one forward per RoI; the outputs are stacked in row
  order into ``[K, C, h, w]``. K = 0 runs no forward and returns ``[0, C, h, w]``.
- layout: each image slice is copied to a C-contiguous float32 array (so any
  strides work); ncnn copies it into its own channel-aligned ``Mat``.
- ``aligned``: passed through as ``4=1``/``4=0``; the layer itself subtracts 0.5
  from the scaled box (half-pixel) or not (legacy, box sides at least 1).
- ``sampling_ratio``: passed through (the layer treats ``<= 0`` as adaptive).
- ``spatial_scale``: written as text (17 significant digits) into the param
  string; ncnn's ``ParamDict`` parses it into a float32.
- threads: ``torch.get_num_threads()`` at call time (ncnn's ``opt.num_threads``).
- dtype: the layer reads and writes ``float`` only: float32 input is passed as
  is; float64 input is cast to float32 before the layer and its output back
  to float64 (the record's ``compute_dtype`` says so); float16/bfloat16 are
  refused with a ``TypeError`` naming the dtype. Output of the input's dtype,
  CPU, contiguous.

Forward only: ncnn is an inference engine, the layer has no backward.
"""
from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from roialign_suite.implementations.calling import PerConfiguration
from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.roi_align import check_geometry

NAME = "ncnn"
PACKAGE = "ncnn"  # its import name
EXTRA = "ncnn"
DTYPES = (torch.float32, torch.float64)
# ROIAlign's param ids: 0=pooled_w 1=pooled_h 2=spatial_scale 3=sampling_ratio 4=aligned 5=version.
VERSION = 1  # torchvision's / detectron2's semantics (see the module docstring for version 0)

# (pooled (h, w), spatial_scale, sampling_ratio, aligned, threads)
NetKey = Tuple[Tuple[int, int], float, int, bool, int]


def unavailable() -> Optional[str]:
    """Why this adapter cannot run here, or None."""
    if importlib.util.find_spec(PACKAGE) is None:
        return f"{PACKAGE} not installed (pip install 'roialign-suite[{EXTRA}]')"
    return None


def layer_param(pooled: Tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool) -> str:
    """The one-layer ncnn param text: inputs ``image`` ``[C, H, W]`` and ``roi`` (4 floats), output ``pooled``."""
    return (
        "7767517\n3 3\n"
        "Input image 0 1 image\n"
        "Input roi 0 1 roi\n"
        f"ROIAlign roialign 2 1 image roi pooled 0={pooled[1]} 1={pooled[0]} 2={spatial_scale:.17g} "
        f"3={sampling_ratio} 4={int(aligned)} 5={VERSION}\n"
    )


def _build_net(key: NetKey):
    import ncnn

    pooled, spatial_scale, sampling_ratio, aligned, threads = key
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param_mem(layer_param(pooled, spatial_scale, sampling_ratio, aligned)) != 0:
        raise RuntimeError(f"ncnn refused the ROIAlign param for {key}")
    return net


_net = PerConfiguration(_build_net)


def roi_align(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align`` on ncnn's ROIAlign layer: float32/float64 CPU ``input [N, C, H, W]``,
    ``boxes`` ``Tensor[K, 5]`` or a list of ``Tensor[L, 4]`` in image pixels -> ``[K, C, h, w]`` of
    the input's dtype (computed in float32)."""
    import ncnn

    args = inputs.roi_align_args(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, dtypes=DTYPES)
    if input.device.type != "cpu":
        raise ValueError(f"{NAME} takes CPU tensors, got input on {input.device}")
    rois, pooled = args.rois, args.output_size
    check_geometry(rois, pooled, args.spatial_scale, args.sampling_ratio, args.aligned)
    # ncnn's OpenMP pool does not survive a fork (the suite forks to isolate calls): a forked
    # child that set torch.set_num_threads(1) must run the layer on one thread, or it waits for ever.
    net = _net((pooled, args.spatial_scale, args.sampling_ratio, args.aligned, torch.get_num_threads()))
    # ncnn.Mat(array) may share the array's memory: each array is kept alive beside its Mat
    # until the forward that reads it has run.
    images = {}
    outputs = []
    for row in rois.tolist():
        b = int(row[0])
        if b not in images:
            array = np.ascontiguousarray(input[b].detach().numpy(), dtype=np.float32)
            images[b] = (array, ncnn.Mat(array))
        roi_array = np.asarray(row[1:], dtype=np.float32)
        roi = ncnn.Mat(roi_array)
        extractor = net.create_extractor()
        extractor.input("image", images[b][1])
        extractor.input("roi", roi)
        status, out = extractor.extract("pooled")
        if status != 0:
            raise RuntimeError(f"ncnn ROIAlign failed (status {status}) on box {row} over a "
                               f"[{', '.join(map(str, input.shape[1:]))}] map")
        outputs.append(np.array(out).reshape(input.shape[1], *pooled))
    if not outputs:
        return input.new_zeros((0, input.shape[1]) + pooled)
    return torch.from_numpy(np.stack(outputs)).to(input.dtype)


def record():
    """The suite's record of this kernel (``implementations.records.Implementation``)."""
    from roialign_suite.implementations import records as registry

    return registry.Implementation(
        NAME, roi_align, unavailable=unavailable(), differentiable=False, dtypes=DTYPES,
        # roialign.cpp: box, bin and sample coordinates in float, sum in a float accumulator.
        coordinates=torch.float32, sums=lambda dtype, backward: torch.float32, compute_dtype=torch.float32,
        divergences=(registry.NEGATIVE_GRID_REFUSED, _negative_grid_either_axis_refused(registry),
                     _zero_channels_refused(registry), _empty_map_read(registry)),
        packages=("ncnn",), xfails="ncnn.txt",
    )


def _negative_grid_either_axis_refused(registry):
    """A negative adaptive grid along one axis and a zero-width other axis: the definition's grid
    product is 0, but the layer's float32 box ends can come out one ulp apart where they are
    equal, that axis's grid is then 1 and the layer refuses, as for a negative product. Excluded
    wherever either axis's grid is negative."""
    return registry.Divergence(
        "ncnn-negative-grid-either-axis-refused",
        "a box inverted along one axis, of zero width along the other, aligned, adaptive grid: the definition's "
        "grid is (negative, 0), no samples, 0; ncnn's float32 arithmetic can make the zero width one ulp wide "
        "(seen: x1 = x2 = 36.5714302 at scale 7/256), its grid 1, and the layer raises as for "
        "negative-sample-grid-refused (an accepted refusal)",
        "known_divergences/ncnn_negative_grid_zero_width_refused.json",
        boxes=lambda case, geometry: geometry.grid_h < 0 or geometry.grid_w < 0,
        cases=lambda case: case.aligned and case.sampling_ratio <= 0,
        excluded=True,
    )


def _empty_map_read(registry):
    """H = 0 or W = 0: a sample at -1 <= y <= 0 is clamped to row 0, which an empty map does not
    have; the layer reads the memory there (tiny garbage values here; SIGSEGV on a Mat made
    with ``Mat(w, h=0, c)``): docs/findings/ncnn_empty_map_out_of_bounds_read.py."""
    return registry.Divergence(
        "ncnn-empty-map-out-of-bounds-read",
        "a box on a map with H = 0 or W = 0: the definition gives zeros; ncnn's ROIAlign clamps a sample at "
        "-1 <= y <= 0 to row 0, which the map does not have, and reads whatever memory is there (denormal "
        "garbage through the adapter, SIGSEGV on a Mat(w, h=0, c)). Not pinned exactly (the values are not "
        "reproducible); zero_sizes.json shows it",
        "zero_sizes.json",
        boxes=registry.on_empty_map,
    )


def _zero_channels_refused(registry):
    """C = 0: the definition gives an empty ``[K, 0, h, w]``; the layer cannot create its empty
    output blob and fails (status -100), which the adapter raises as a RuntimeError."""
    return registry.Divergence(
        "ncnn-zero-channels-refused",
        "a box over a map with C = 0: the definition (and torchvision) give an empty [K, 0, h, w]; ncnn's "
        "ROIAlign cannot create its empty output blob and its forward fails with status -100 (an accepted "
        "refusal: the adapter raises RuntimeError naming the status)",
        "known_divergences/ncnn_zero_channels_refused.json",
        boxes=lambda case, geometry: case.shape[1] == 0,
        excluded=True,
    )
