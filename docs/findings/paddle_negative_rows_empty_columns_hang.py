"""PaddlePaddle 3.3.1 CPU roi_align HANGS: aligned=True, sampling_ratio=0, a zero-width box
inverted along y by a bin (x1 == x2, y2 < y1). The adaptive grid is ceil(0 / 2) = 0 columns and
ceil(-2 / 2) = -1 rows; roi_align_kernel.cc loops `for (std::size_t iy = 0; iy < roi_bin_grid_h; ...)`
with roi_bin_grid_h = (size_t)-1: 2**64 - 1 iterations. Expected: [[0, 0], [0, 0]] (no samples).
This script does not return (killed by `timeout 20` in the command below)."""
import numpy as np
import paddle

paddle.set_device("cpu")
x = paddle.to_tensor(np.arange(16, dtype="float64").reshape(1, 1, 4, 4))
boxes = paddle.to_tensor(np.array([[1.0, 3.0, 1.0, 1.0]]))
print("expected: [[0.0, 0.0], [0.0, 0.0]]; calling paddle (hangs) ...", flush=True)
out = paddle.vision.ops.roi_align(x, boxes, paddle.to_tensor(np.array([1], dtype="int32")), output_size=2,
                                  spatial_scale=1.0, sampling_ratio=0, aligned=True)
print("paddle:  ", out.numpy()[0, 0].tolist())
