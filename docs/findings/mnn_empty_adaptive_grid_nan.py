"""MNN 3.6.1 RoIAlign: NaN for a zero-width box with aligned=True and an adaptive grid.

With sampling_ratio=0 (adaptive) the grid per bin is ceil(roi_width / pooled_width) = 0
samples for a box of zero width. torchvision (and Detectron2, ONNX's reference) divide the
empty sum by max(count, 1) and return 0; MNN's MNNRoiAlignAvg multiplies it by 1 / 0: NaN.
"""
import numpy as np
import MNN.expr as F

x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
rois = np.array([[0, 1.0, 1.0, 1.0, 3.0]], np.float32)  # batch 0, x1 = x2 = 1: zero width
out = F.roi_align(F.convert(F.const(x, [1, 1, 4, 4], F.NCHW, F.float), F.NC4HW4),
                  F.const(rois, [1, 5], F.NCHW, F.float),
                  2, 2, 1.0, 0, True, F.Pooling_Mode.AVEPOOL)  # pooled 2x2, scale 1, adaptive, aligned
got = F.convert(out, F.NCHW).read()
expected = np.zeros((1, 1, 2, 2), np.float32)  # no samples: every bin 0
print("expected", expected.ravel(), "got", got.ravel())
assert not np.isnan(got).any(), "MNN returns NaN"
