"""OpenCV dnn's ``RoiAlign`` (PyPI ``opencv-python-headless``, OpenCV's own engine) behind
``torchvision.ops.roi_align``'s signature.

The kernel is the ONNX ``RoiAlign`` layer of OpenCV's dnn module
(``modules/dnn/src/layers/roialign_layer.cpp``, OpenCV 5.x). We build the same
one-node ONNX model the suite builds for ONNX Runtime and OpenVINO
(``implementations.onnx_runtimes.roi_align_model``: opset 16, ``mode="avg"``), read it
with ``cv2.dnn.readNetFromONNX`` once per configuration (dtype, output size,
scale, grid, ``aligned``, threads) and run it with ``net.setInput`` /
``net.forward`` on the default backend and target (OpenCV's CPU code).

Conversions (all of them ``implementations.onnx_runtimes.RuntimeRoIAlign``'s, shared with
ONNX Runtime and OpenVINO; the arithmetic is OpenCV's):

- ``boxes``: either torchvision form is checked by the suite's own front end
  (a clear error naming the argument or row) and split into ``rois [K, 4]``
  ``(x1, y1, x2, y2)`` in image pixels, of the input's dtype (exact: the caller's
  values), and ``batch_indices [K]`` int64. K = 0 returns ``[0, C, h, w]``
  without running the net (a one-node model of K = 0 is not run).
- layout: ``input`` is passed as a C-contiguous ``[N, C, H, W]`` array (any
  strides work: a copy when needed).
- ``aligned=True`` is ``coordinate_transformation_mode="half_pixel"`` (the layer
  subtracts 0.5 from the scaled box), ``aligned=False`` is ``"output_half_pixel"``
  (no shift; the layer makes the box sides at least 1).
- ``sampling_ratio <= 0`` (adaptive) becomes the ONNX attribute 0.
- ``spatial_scale`` is an ONNX float attribute: rounded to float32.
- dtype: float32 and float64 (the model's element type follows the input); the
  layer computes coordinates and sums in float for both and casts the result
  to the input's dtype. Output of the input's dtype, CPU, contiguous.
- threads: ``cv2.setNumThreads`` (process-wide) is set to the configured
  count before each forward.

Forward only: OpenCV's dnn module is an inference engine, the layer has no backward.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import numpy as np
import torch

from roialign_suite.implementations.onnx_runtimes import DEFAULT_THREADS, RuntimeRoIAlign, Session

NAME = "opencv-dnn"
PACKAGE = "cv2"  # its import name (PyPI: opencv-python-headless)
EXTRA = "opencv"
DTYPES = (torch.float32, torch.float64)


def unavailable() -> Optional[str]:
    """Why this adapter cannot run here, or None."""
    absent = [p for p in (PACKAGE, "onnx") if importlib.util.find_spec(p) is None]
    if absent:
        return f"{', '.join(absent)} not installed (pip install 'roialign-suite[{EXTRA}]')"
    return None


def _opencv_session(model: bytes, threads: int) -> Session:
    """``model`` read by OpenCV's own ONNX importer: ``run(x, rois, batch_indices) -> y``."""
    import cv2

    net = cv2.dnn.readNetFromONNX(np.frombuffer(model, dtype=np.uint8))

    def run(x, rois, batch_indices):
        cv2.setNumThreads(threads)
        net.setInput(x, "X")
        net.setInput(rois, "rois")
        net.setInput(batch_indices, "batch_indices")
        return net.forward("Y").copy()

    return run


roi_align = RuntimeRoIAlign(NAME, _opencv_session, DEFAULT_THREADS)


def record():
    """The suite's record of this kernel (``implementations.records.Implementation``)."""
    from roialign_suite.implementations import records as registry

    return registry.Implementation(
        NAME, roi_align, unavailable=unavailable(), differentiable=False, dtypes=DTYPES,
        # roialign_layer.cpp: box, bin and sample coordinates in float, the sum in a float
        # accumulator, for float32 and float64 input alike.
        coordinates=torch.float32, sums=lambda dtype, backward: torch.float32, compute_dtype=torch.float32,
        divergences=(_empty_grid_samples_once(registry), _empty_map_segfault(registry)),
        packages=("opencv-python-headless",), xfails="opencv-dnn.txt",
    )


def _empty_grid_samples_once(registry):
    """aligned, adaptive, a box of zero or negative extent along an axis: grid <= 0 there."""
    return registry.Divergence(
        "opencv-empty-adaptive-grid-sampled-once",
        "aligned=True (half_pixel), adaptive grid, a box of zero or negative width or height: the adaptive "
        "grid ceil(extent / pooled) is <= 0 along that axis, so the definition (torchvision, onnx.reference, "
        "ONNX Runtime) takes no sample and gives 0; OpenCV's RoiAlign clamps each grid to at least 1 "
        "(max(ceil(...), 1)) and returns the bilinear value at one point per bin",
        "known_divergences/opencv_dnn_empty_adaptive_grid_*.json",
        boxes=lambda case, g: g.grid_h <= 0 or g.grid_w <= 0,
        cases=lambda case: case.aligned and case.sampling_ratio <= 0,
    )


def _empty_map_segfault(registry):
    """H = 0 or W = 0 with at least one box: the forward dies with SIGSEGV."""
    return registry.Divergence(
        "opencv-empty-map-segfault",
        "a box on a map with H = 0 or W = 0: the definition (and ONNX Runtime) give zeros; OpenCV's "
        "net.forward dies with SIGSEGV, wherever the box lies",
        "known_divergences/opencv_dnn_empty_map_segfault.json",
        boxes=lambda case, geometry: case.shape[2] == 0 or case.shape[3] == 0,
        excluded=True,
    )
