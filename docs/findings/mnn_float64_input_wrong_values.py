"""MNN 3.6.1 RoIAlign on float64 (MNN.expr.double) input: wrong values, no error.

CPUROIAlign reads the feature map and the RoIs as float32 whatever their type; with
double constants it returns garbage. Expected: bilinear samples of the 4x4 ramp
f(y, x) = 4 y + x for the box (0, 0)-(3, 3), 2x2 bins of 1.5 px, 2x2 samples each,
legacy (aligned=False): bin averages = f at the bin centres (0.75, 2.25).
"""
import numpy as np
import MNN.expr as F

x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
rois = np.array([[0, 0.0, 0.0, 3.0, 3.0]], np.float64)
out = F.roi_align(F.convert(F.const(x, [1, 1, 4, 4], F.NCHW, F.double), F.NC4HW4),
                  F.const(rois, [1, 5], F.NCHW, F.double),
                  2, 2, 1.0, 2, False, F.Pooling_Mode.AVEPOOL)
got = np.asarray(F.convert(out, F.NCHW).read()).ravel()
centres = np.array([0.75, 2.25])
expected = (4 * centres[:, None] + centres[None, :]).ravel()
print("expected", expected, "got", got)
assert np.allclose(got, expected), "MNN's float64 RoIAlign is wrong"
