"""OpenCV dnn RoiAlign (half_pixel, adaptive grid) samples a zero-size or inverted box once per bin.

ONNX RoiAlign-16 with sampling_ratio = 0 uses ceil(roi_width / output_width) samples per bin; a box
of zero width (or x2 < x1) under half_pixel has 0 (or fewer) samples, and onnx.reference, ONNX
Runtime and torchvision (aligned=True) return 0 for it. OpenCV clamps the grid to
max(ceil(...), 1) and returns the bilinear value at one point per bin.
Found with opencv-python-headless 5.1.0.95 (readNetFromONNX, default backend/target).
Needs: opencv-python-headless, onnx (to build the one-node model), numpy.
"""
import cv2
import numpy as np
from onnx import TensorProto, helper

node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg",
                        coordinate_transformation_mode="half_pixel", output_height=2, output_width=2,
                        sampling_ratio=0, spatial_scale=1.0)
graph = helper.make_graph([node], "g", [
    helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 4, 4]),
    helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 4]),
    helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["K", 1, 2, 2])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))

x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
for what, box in (("zero width", [2, 1, 2, 3]), ("zero size", [2, 2, 2, 2]), ("x2 < x1", [3, 1, 1, 3])):
    net.setInput(x, "X")
    net.setInput(np.array([box], np.float32), "rois")
    net.setInput(np.array([0], np.int64), "batch_indices")
    got = net.forward("Y")
    # Expected by hand: grid_w = ceil((x2 - x1) / 2) <= 0 -> no samples -> 0 for every bin.
    print(f"{what} {box}: expected {np.zeros((2, 2)).tolist()}, got {got[0, 0].tolist()}")
# observed: [[5.5, 5.5], [9.5, 9.5]], [[7.5, 7.5], [7.5, 7.5]], [[6.0, 5.0], [10.0, 9.0]]
