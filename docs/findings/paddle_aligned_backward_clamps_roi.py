"""PaddlePaddle 3.3.1 CPU roi_align: with aligned=True the backward is not the forward's adjoint
for a RoI under one pixel: roi_align_grad_kernel.cc clamps roi_width/roi_height to >= 1
unconditionally, roi_align_kernel.cc (forward) only when aligned=False.

Box (1, 1, 1.5, 1.75), aligned=True, output 1x1, sampling_ratio 1: the forward samples one
point, the box centre minus 0.5 = (x, y) = (0.75, 0.875); the gradient of out = sum(w * x)
is the bilinear weights of that point. Paddle's backward spreads it around (1.0, 1.0) instead.
"""
import numpy as np
import paddle

paddle.set_device("cpu")
x = paddle.to_tensor(np.zeros((1, 1, 4, 4)), stop_gradient=False)
boxes = paddle.to_tensor(np.array([[1.0, 1.0, 1.5, 1.75]]))
out = paddle.vision.ops.roi_align(x, boxes, paddle.to_tensor(np.array([1], dtype="int32")), output_size=1,
                                  spatial_scale=1.0, sampling_ratio=1, aligned=True)
(got,) = paddle.grad([out.sum()], [x])

expected = np.zeros((4, 4))
sx, sy = 0.75, 0.875  # the one sample: x1 - 0.5 + 0.5 * (1.5 - 1), y1 - 0.5 + 0.5 * (1.75 - 1)
for r, wy in ((0, 1 - sy), (1, sy)):
    for c, wx in ((0, 1 - sx), (1, sx)):
        expected[r, c] = wy * wx
print("expected d out / d x:\n", expected)
print("paddle:\n", got.numpy()[0, 0])
print("adjoint holds:", np.allclose(got.numpy()[0, 0], expected))
