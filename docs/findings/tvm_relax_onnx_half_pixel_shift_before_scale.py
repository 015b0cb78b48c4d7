"""Apache TVM 0.27: the Relax ONNX importer's RoiAlign shifts half_pixel RoIs by -0.5 *before* spatial_scale.

ONNX RoiAlign-16, coordinate_transformation_mode="half_pixel": roi_start = x1 * spatial_scale - 0.5.
TVM's importer (relax/frontend/onnx/onnx_frontend.py, RoiAlign._impl) adds -0.5 to the rois in image
pixels and lets relax.op.vision.roi_align scale them, i.e. (x1 - 0.5) * spatial_scale: every sample is
off by 0.5 * (1 - spatial_scale) feature pixels whenever spatial_scale != 1 (FPN levels use 1/4..1/32).
The PyTorch ExportedProgram importer (_torchvision_roi_align, aligned=True) subtracts 0.5 the same way.

Needs: apache-tvm==0.27.0.post1, onnx, numpy.
"""
import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

H = W = 8
scale = 0.5
x = np.tile(np.arange(W, dtype=np.float32), (1, 1, H, 1))  # x[0, 0, y, x] = x: bilinear is exact
rois = np.array([[4.0, 0.0, 8.0, 8.0]], np.float32)        # x1, y1, x2, y2 in image pixels
batch_indices = np.array([0], np.int64)

node = helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode="avg",
                        coordinate_transformation_mode="half_pixel", output_height=1, output_width=1,
                        sampling_ratio=1, spatial_scale=scale)
graph = helper.make_graph([node], "g", [
    helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, H, W]),
    helper.make_tensor_value_info("rois", TensorProto.FLOAT, [1, 4]),
    helper.make_tensor_value_info("batch_indices", TensorProto.INT64, [1])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1, 1, 1])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])

vm = relax.VirtualMachine(tvm.compile(from_onnx(model), target="llvm"), tvm.cpu())
got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(rois), tvm.runtime.tensor(batch_indices)).numpy()

# By hand: x from 4 * 0.5 - 0.5 = 1.5 to 8 * 0.5 - 0.5 = 3.5; one bin, one sample at its centre, x = 2.5.
expected = (rois[0, 0] * scale - 0.5 + rois[0, 2] * scale - 0.5) / 2
print(f"expected {expected}, got {got.ravel()[0]}  (TVM samples at ((4 - 0.5) * 0.5 + (8 - 0.5) * 0.5) / 2 = 2.75)")
