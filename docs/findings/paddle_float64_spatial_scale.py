"""PaddlePaddle 3.3.1 CPU roi_align: spatial_scale is a float32 attribute, so on float64 input a
scale float32 cannot hold (1/3) moves the samples: the output is off by ~3e-7 where float64
arithmetic gives ~1e-15. On the ramp 4 y + x, a bin's average is the ramp at the bin centre."""
import numpy as np
import paddle

paddle.set_device("cpu")
scale = 1 / 3
x = paddle.to_tensor((4 * np.arange(4.0)[:, None] + np.arange(4.0)).reshape(1, 1, 4, 4))
box = np.array([1.3, 2.1, 7.5, 8.2])
out = paddle.vision.ops.roi_align(x, paddle.to_tensor(box[None]), paddle.to_tensor(np.array([1], dtype="int32")),
                                  output_size=2, spatial_scale=scale, sampling_ratio=2, aligned=False)
x1, y1, x2, y2 = box * scale
# Every sample (sampling_ratio 2) lies inside the 4x4 map: bilinear on a ramp is exact.
cy = y1 + (y2 - y1) * np.array([0.25, 0.75])
cx = x1 + (x2 - x1) * np.array([0.25, 0.75])
expected = 4 * cy[:, None] + cx[None, :]
print("expected:", expected.tolist())
print("paddle:  ", out.numpy()[0, 0].tolist())
print("max abs error:", np.abs(out.numpy()[0, 0] - expected).max())
