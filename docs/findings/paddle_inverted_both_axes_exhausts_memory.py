"""PaddlePaddle 3.3.1 CPU roi_align ALLOCATES WITHOUT BOUND, then aborts: aligned=True,
sampling_ratio=0, a box inverted along both axes by a bin (x2 < x1, y2 < y1). The adaptive grids
are ceil(-2 / 2) = -1 each; as std::size_t their product reserves 4 entries, then the loops run to
(size_t)-1 rows and columns, emplace_back-ing a sample each step (~0.4 GB/s). Expected:
[[0, 0], [0, 0]]. Run it under a memory limit, e.g. `(ulimit -v 6000000; python this.py)`:
it dies with SIGABRT (std::bad_alloc) after ~15 s; without a limit it takes the machine's memory."""
import numpy as np
import paddle

paddle.set_device("cpu")
x = paddle.to_tensor(np.arange(16, dtype="float64").reshape(1, 1, 4, 4))
boxes = paddle.to_tensor(np.array([[3.0, 3.0, 1.0, 1.0]]))
print("expected: [[0.0, 0.0], [0.0, 0.0]]; calling paddle (aborts) ...", flush=True)
out = paddle.vision.ops.roi_align(x, boxes, paddle.to_tensor(np.array([1], dtype="int32")), output_size=2,
                                  spatial_scale=1.0, sampling_ratio=0, aligned=True)
print("paddle:  ", out.numpy()[0, 0].tolist())
