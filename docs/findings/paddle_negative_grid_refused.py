"""PaddlePaddle 3.3.1 CPU roi_align: aligned=True, sampling_ratio=0, a box inverted along x by a
bin, positive height: grid_w = -1, grid_h = 1; as std::size_t the reservation overflows and
std::vector::reserve throws std::length_error. Run alone (this script, with or without torch
imported first) the exception escapes: "terminate called after throwing an instance of
'std::length_error'", the process dies with SIGABRT. In the suite's process (numba, llvmlite and
the suite loaded first) the same call raises RuntimeError('vector::reserve') instead; we did not
find what makes the difference. Expected: zeros (no samples), as the definition gives;
torchvision's CPU kernel raises here (an accepted refusal), it does not abort."""
import numpy as np
import paddle

paddle.set_device("cpu")
x = paddle.to_tensor(np.arange(16, dtype="float64").reshape(1, 1, 4, 4))
boxes = paddle.to_tensor(np.array([[3.0, 1.0, 1.0, 3.0]]))
print("expected: [[0.0, 0.0], [0.0, 0.0]]")
try:
    out = paddle.vision.ops.roi_align(x, boxes, paddle.to_tensor(np.array([1], dtype="int32")), output_size=2,
                                      spatial_scale=1.0, sampling_ratio=0, aligned=True)
    print("paddle:  ", out.numpy()[0, 0].tolist())
except Exception as error:
    print("paddle raised:", type(error).__name__, str(error)[:200])
