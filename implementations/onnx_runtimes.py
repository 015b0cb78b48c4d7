"""ONNX Runtime's and OpenVINO's ``RoiAlign`` as implementations, behind torchvision's signature.

Each adapter builds a one-node ONNX model (``RoiAlign``, opset 16, ``mode="avg"``)
per configuration, compiles it once, and caches the session. Pixel
convention: ``aligned=True`` is ``coordinate_transformation_mode="half_pixel"``
(pixel centres at +0.5, coordinates shifted by -0.5), ``aligned=False`` is
``"output_half_pixel"`` (no shift, the legacy Mask R-CNN rule).

Forward only: the runtimes have no gradient. The packages are optional
(``pip install .[runtimes]``); :func:`onnxruntime_unavailable` and
:func:`openvino_unavailable` say why an adapter cannot run, or None.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from roialign_suite.implementations.records import (
    NEGATIVE_GRID_REFUSED, ONNX_SCALE_IN_FLOAT32, RUNTIME_EMPTY_MAP_UNINITIALISED, Divergence, Implementation,
    adaptive_grid_may_round_empty,
)
from roialign_suite.implementations.calling import PerConfiguration
from roialign_suite.reference import inputs
from roialign_suite.reference.inputs import BoxesArg
from roialign_suite.reference.roi_align import check_geometry

# Opset 16 is the first RoiAlign with coordinate_transformation_mode.
OPSET = 16
COORDINATE_MODE = {True: "half_pixel", False: "output_half_pixel"}
DEFAULT_THREADS = 2

# (dtype, pooled, spatial_scale, onnx sampling_ratio, aligned, threads)
ConfigKey = Tuple[torch.dtype, Tuple[int, int], float, int, bool, int]
Session = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _missing(*packages: str) -> Optional[str]:
    absent = [p for p in packages if importlib.util.find_spec(p) is None]
    if not absent:
        return None
    return f"{', '.join(absent)} not installed (pip install -e '.[runtimes]')"


# What each adapter imports: the ONNX model builder and the runtime.
ONNXRUNTIME_PACKAGES = ("onnx", "onnxruntime")
OPENVINO_PACKAGES = ("onnx", "openvino")


def onnxruntime_unavailable() -> Optional[str]:
    """Why the onnxruntime adapter cannot run here, or None."""
    return _missing(*ONNXRUNTIME_PACKAGES)


def openvino_unavailable() -> Optional[str]:
    """Why the OpenVINO adapter cannot run here, or None."""
    return _missing(*OPENVINO_PACKAGES)


def onnx_sampling_ratio(sampling_ratio: int) -> int:
    """torchvision's ``sampling_ratio`` -> the ONNX attribute (adaptive is 0, never negative)."""
    return max(sampling_ratio, 0)


def roi_align_model(dtype: torch.dtype, pooled: Tuple[int, int], spatial_scale: float,
                    sampling_ratio: int, aligned: bool) -> bytes:
    """A serialized one-node ONNX model ``Y = RoiAlign(X, rois, batch_indices)``.

    ``X [N, C, H, W]`` and ``rois [K, 4]`` (x1, y1, x2, y2 in image pixels) of
    ``dtype``; ``batch_indices [K]`` int64; ``Y [K, C, pooled_h, pooled_w]``.
    ``spatial_scale`` is stored as an ONNX float attribute, i.e. rounded to float32.
    """
    import onnx
    from onnx import TensorProto, helper

    element = {torch.float32: TensorProto.FLOAT, torch.float64: TensorProto.DOUBLE}[dtype]
    node = helper.make_node(
        "RoiAlign",
        ["X", "rois", "batch_indices"],
        ["Y"],
        mode="avg",
        coordinate_transformation_mode=COORDINATE_MODE[aligned],
        output_height=pooled[0],
        output_width=pooled[1],
        sampling_ratio=onnx_sampling_ratio(sampling_ratio),
        spatial_scale=spatial_scale,
    )
    graph = helper.make_graph(
        [node],
        "roi_align",
        [
            helper.make_tensor_value_info("X", element, ["N", "C", "H", "W"]),
            helper.make_tensor_value_info("rois", element, ["K", 4]),
            helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"]),
        ],
        [helper.make_tensor_value_info("Y", element, ["K", "C", pooled[0], pooled[1]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnxruntime_session(model: bytes, threads: int) -> Session:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(x, rois, batch_indices):
        return session.run(None, {"X": x, "rois": rois, "batch_indices": batch_indices})[0]

    return run


def _openvino_session(model: bytes, threads: int) -> Session:
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model, b""), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x, rois, batch_indices):
        return request.infer({"X": x, "rois": rois, "batch_indices": batch_indices})[0].copy()

    return run


class RuntimeRoIAlign:
    """One runtime's RoiAlign as a callable with ``torchvision.ops.roi_align``'s signature.

    Takes and returns CPU tensors (float32 or float64); the suite's argument
    checks (``reference.inputs``) run first, so bad input raises a clear error naming the argument or row.
    ``threads=None`` means ``torch.get_num_threads()`` at call time.
    """

    def __init__(self, name: str, make_session: Callable[[bytes, int], Session], threads: Optional[int] = None):
        self.__name__ = name
        self._make_session = make_session
        self.threads = threads
        self.session = PerConfiguration(self._session)

    def __repr__(self) -> str:
        return f"RuntimeRoIAlign({self.__name__!r}, threads={self.threads})"

    def _session(self, key: ConfigKey) -> Session:
        """The compiled model for ``key`` (``self.session(key)`` builds it on first use and keeps the latest)."""
        dtype, pooled, spatial_scale, sampling_ratio, aligned, threads = key
        return self._make_session(roi_align_model(dtype, pooled, spatial_scale, sampling_ratio, aligned), threads)

    def __call__(self, input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
        # The models are built for float32 and float64 only.
        args = inputs.roi_align_args(
            input, boxes, output_size, spatial_scale, sampling_ratio, aligned, dtypes=(torch.float32, torch.float64)
        )
        if input.device.type != "cpu":
            raise ValueError(f"{self.__name__} takes CPU tensors, got input on {input.device}")
        rois, pooled, spatial_scale, sampling_ratio, aligned = (
            args.rois, args.output_size, args.spatial_scale, args.sampling_ratio, args.aligned
        )
        check_geometry(rois, pooled, spatial_scale, sampling_ratio, aligned)
        if rois.shape[0] == 0:
            return input.new_zeros((0, input.shape[1]) + pooled)
        threads = self.threads or torch.get_num_threads()
        key = (input.dtype, pooled, spatial_scale, onnx_sampling_ratio(sampling_ratio), aligned, threads)
        run = self.session(key)
        out = run(
            input.detach().contiguous().numpy(),
            # rois are float64 holding the caller's exact values: back to input's dtype exactly.
            rois[:, 1:].to(input.dtype).contiguous().numpy(),
            rois[:, 0].to(torch.int64).numpy(),
        )
        return torch.from_numpy(np.ascontiguousarray(out)).to(input.dtype)


def onnxruntime_roi_align(threads: Optional[int] = DEFAULT_THREADS) -> RuntimeRoIAlign:
    """ONNX Runtime's CPU RoiAlign with ``threads`` intra-op threads."""
    return RuntimeRoIAlign("onnxruntime", _onnxruntime_session, threads)


def openvino_roi_align(threads: Optional[int] = DEFAULT_THREADS) -> RuntimeRoIAlign:
    """OpenVINO's CPU plugin RoiAlign (ONNX front end) with ``threads`` inference threads."""
    return RuntimeRoIAlign("openvino", _openvino_session, threads)


roi_align_onnxruntime = onnxruntime_roi_align()
roi_align_openvino = openvino_roi_align()


OPENVINO_FLOAT64_IN_FLOAT32 = Divergence(
    "openvino-float64-in-float32",
    "OpenVINO's CPU plugin runs float64 models in float32",
    "known_divergences/openvino_float64_matches_reference_*",
    cases=lambda case: case.dtype == "float64",
    whole_dtype="float64",
)
OPENVINO_EMPTY_GRID_NAN = Divergence(
    "openvino-empty-grid-nan",
    "a zero-width or zero-height box with aligned=True and an adaptive grid has 0 samples: OpenVINO "
    "divides 0 by 0 (NaN) where the definition gives 0; also a box within float32 rounding of zero size, "
    "whose grid OpenVINO's float32 coordinates may make empty",
    "known_divergences/openvino_zero_size_box_adaptive_grid_aligned.json",
    boxes=lambda case, g: g.grid_h * g.grid_w == 0 or adaptive_grid_may_round_empty(case, g, torch.float32),
    cases=lambda case: case.aligned and case.sampling_ratio <= 0,
)


def records() -> List[Implementation]:
    """ONNX Runtime's and OpenVINO's CPU RoiAlign (forward only)."""
    return [
        Implementation(
            "onnxruntime", roi_align_onnxruntime, unavailable=onnxruntime_unavailable(),
            differentiable=False, packages=ONNXRUNTIME_PACKAGES, xfails="onnxruntime.txt",
            divergences=(NEGATIVE_GRID_REFUSED, ONNX_SCALE_IN_FLOAT32, RUNTIME_EMPTY_MAP_UNINITIALISED),
        ),
        Implementation(
            "openvino", roi_align_openvino, unavailable=openvino_unavailable(),
            differentiable=False, compute_dtype=torch.float32, packages=OPENVINO_PACKAGES, xfails="openvino.txt",
            # `import openvino` sends a telemetry event from a forked process: done once, in the
            # worker's zygote (which never runs a kernel), not in every worker after our kernels ran.
            preload=("openvino",),
            divergences=(NEGATIVE_GRID_REFUSED, ONNX_SCALE_IN_FLOAT32, OPENVINO_FLOAT64_IN_FLOAT32,
                         OPENVINO_EMPTY_GRID_NAN, RUNTIME_EMPTY_MAP_UNINITIALISED),
        ),
    ]
