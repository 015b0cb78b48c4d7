"""PaddlePaddle 3.3.1 CPU roi_align: aligned=True, adaptive grid (sampling_ratio=0), a box of zero
width: the adaptive grid is ceil(0 / 2) = 0 samples along x, so every bin is empty; Paddle
returns NaN (it multiplies the empty sum by 1 / (grid_h * grid_w) = inf). Expected: 0, as
torchvision and ONNX Runtime give (they divide by max(grid_h * grid_w, 1))."""
import numpy as np
import paddle

paddle.set_device("cpu")
x = paddle.to_tensor(np.arange(16, dtype="float64").reshape(1, 1, 4, 4))
boxes = paddle.to_tensor(np.array([[1.0, 1.0, 1.0, 3.0]]))  # x1 == x2
out = paddle.vision.ops.roi_align(x, boxes, paddle.to_tensor(np.array([1], dtype="int32")), output_size=2,
                                  spatial_scale=1.0, sampling_ratio=0, aligned=True)
print("expected:", np.zeros((2, 2)).tolist())
print("paddle:  ", out.numpy()[0, 0].tolist())
