"""MXNet 1.9.1: ROIAlign(aligned=True) aborts the process on a zero-width (or inverted) box.

Expected (torchvision.ops.roi_align, Detectron2's ROIAlign, the RoIAlign definition): a box of
zero width has an empty adaptive sample grid and pools to 0; with a fixed grid it averages
its samples (all on the line x = x1). Got: the process dies with SIGABRT:

    terminate called after throwing an instance of 'dmlc::Error'
      what():  ../src/operator/contrib/roi_align.cc:187: Check failed: roi_width > 0. (0 vs. 0)

ROIAlignForward runs `CHECK_GT(roi_width, 0.)` inside `#pragma omp parallel for`; the exception
cannot leave the OpenMP region, so std::terminate is called. Needs numpy < 1.24.
Run: python mxnet_aligned_empty_box_abort.py   (it crashes on purpose; exit status 134 / -6)
"""
import mxnet as mx
import numpy as np

image = np.arange(16.0).reshape(4, 4)  # value = 4 * y + x: bilinear interpolation is exact


def bilinear(y, x):
    return 4 * y + x


# Box (x1, y1, x2, y2) = (2, 0.5, 2, 2.5), aligned: shift by -0.5 -> x in [1.5, 1.5], y in [0, 2].
# Output 1x1, sample_ratio 2: samples at x = 1.5, y = 0.5 and 1.5; their mean is 4 * 1 + 1.5 = 5.5.
expected = np.mean([bilinear(y, 1.5) for y in (0.5, 1.5)])
print("expected:", expected)
out = mx.nd.contrib.ROIAlign(mx.nd.array(image.reshape(1, 1, 4, 4)), mx.nd.array([[0, 2.0, 0.5, 2.0, 2.5]]),
                             pooled_size=(1, 1), spatial_scale=1.0, sample_ratio=2, aligned=True)
print("got:", out.asnumpy().ravel())  # never printed: the process aborts (SIGABRT) in the call above
