"""OpenCV dnn RoiAlign: net.forward dies with SIGSEGV on a feature map of height 0 (or width 0).

X [1, 1, 0, 4], one RoI far outside the (empty) map: every sample lies outside [-1, H] x [-1, W],
so ONNX's definition gives zeros; the process dies with SIGSEGV instead (this script crashes on
the forward line; run it in a shell and look at the exit status, 139).
Found with opencv-python-headless 5.1.0.95 (readNetFromONNX, default backend/target).
Needs: opencv-python-headless, onnx (to build the one-node model), numpy.
"""
import cv2
import numpy as np
from onnx import TensorProto, helper

node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg",
                        coordinate_transformation_mode="output_half_pixel", output_height=2, output_width=2,
                        sampling_ratio=2, spatial_scale=1.0)
graph = helper.make_graph([node], "g", [
    helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "C", "H", "W"]),
    helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 4]),
    helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["K", "C", 2, 2])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
net.setInput(np.zeros((1, 1, 0, 4), np.float32), "X")
net.setInput(np.array([[50.0, 50.0, 60.0, 60.0]], np.float32), "rois")
net.setInput(np.array([0], np.int64), "batch_indices")
print("expected: zeros of shape (1, 1, 2, 2)", flush=True)
print("got:", net.forward("Y").tolist())  # observed: the process dies here with SIGSEGV
