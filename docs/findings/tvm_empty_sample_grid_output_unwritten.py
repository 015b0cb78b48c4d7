"""Apache TVM 0.27: topi.vision.roi_align leaves the output unwritten when a RoI's sample grid is empty.

aligned=True, adaptive sampling (sample_ratio <= 0), a RoI of zero width (or inverted along one or both axes):
roi_bin_grid_w = ceil(roi_w / pooled_w) is 0 (or negative), so the te.sum reduction has no iterations.
TVM lowers the reduction's init (output = 0) *inside* the reduction loops (a block init), so with no
iterations the output element is never written: it keeps whatever the buffer held (here NaN, to show
it; an np.empty buffer, or the Relax VM's allocator, gives stale values). The average of no samples
is 0 (torchvision, ONNX Runtime and the ONNX reference divide by max(count, 1)).

Needs: apache-tvm==0.27.0.post1, numpy.
"""
import numpy as np
import tvm
from tvm import te, topi

data = te.placeholder((1, 1, 4, 4), "float32", name="data")
rois = te.placeholder((3, 5), "float32", name="rois")
out = topi.vision.roi_align(data, rois, (2, 2), 1.0, "avg", -1, True, "NCHW")
f = tvm.compile(te.create_prim_func([data, rois, out]), target="llvm")

x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
boxes = np.array([[0, 1.0, 1.0, 1.0, 3.0],     # zero width: grid_w = 0
                  [0, 3.0, 1.0, 1.0, 3.0],     # inverted along x: grid_w < 0
                  [0, 3.0, 3.0, 1.0, 1.0]],    # inverted along both: grid_h, grid_w < 0 (product > 0)
                 np.float32)
result = tvm.runtime.tensor(np.full((3, 1, 2, 2), np.nan, np.float32))
f(tvm.runtime.tensor(x), tvm.runtime.tensor(boxes), result)
print("expected", np.zeros((3, 1, 2, 2), np.float32).ravel().tolist())
print("got     ", result.numpy().ravel().tolist())
