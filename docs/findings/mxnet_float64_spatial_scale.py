"""MXNet 1.9.1: ROIAlign rounds spatial_scale to float32 even on float64 data.

ROIAlignParam declares `float spatial_scale`. With scale 1/3 a 9-pixel box side is
9 * (1/3) = 3.0 feature pixels in float64 (adaptive grid ceil(3 / 1) = 3 samples) but
9 * float32(1/3) = 3.0000001 in MXNet (grid 4), so the one bin averages other samples.
Expected (torchvision.ops.roi_align, the definition, in float64): the mean over the 3x3 grid.
Needs numpy < 1.24. Run: python mxnet_float64_spatial_scale.py
"""
import mxnet as mx
import numpy as np

image = np.array([[x * x + y * y for x in range(4)] for y in range(4)], dtype=np.float64)


def bilinear(y, x):
    y0, x0 = min(int(y), 2), min(int(x), 2)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * image[y0, x0] + (1 - ly) * lx * image[y0, x0 + 1]
            + ly * (1 - lx) * image[y0 + 1, x0] + ly * lx * image[y0 + 1, x0 + 1])


# Box (0, 0, 9, 9) at scale 1/3, legacy convention: the RoI is [0, 3] x [0, 3], one bin,
# grid 3: samples at 0.5, 1.5, 2.5 along each axis.
expected = np.mean([bilinear(y, x) for y in (0.5, 1.5, 2.5) for x in (0.5, 1.5, 2.5)])
out = mx.nd.contrib.ROIAlign(mx.nd.array(image.reshape(1, 1, 4, 4), dtype=np.float64),
                             mx.nd.array([[0, 0.0, 0.0, 9.0, 9.0]], dtype=np.float64), pooled_size=(1, 1),
                             spatial_scale=1 / 3, sample_ratio=0)
print("expected:", expected)
print("got:     ", out.asnumpy().ravel()[0], "(dtype", out.dtype.__name__ + ")")
