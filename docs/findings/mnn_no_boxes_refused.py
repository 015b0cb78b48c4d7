"""MNN 3.6.1 RoIAlign: K = 0 RoIs (and a map with H = 0 or W = 0) fail in the executor.

torchvision returns an empty [0, C, h, w] output for K = 0 (and zeros for H = 0 or W = 0);
MNN's Var.read() raises SystemError "call to readMap meet a error".
"""
import numpy as np
import MNN.expr as F

for shape, rois in [((1, 1, 4, 4), np.zeros((0, 5), np.float32)),
                    ((1, 1, 0, 4), np.array([[0, 0.0, 0.0, 2.0, 2.0]], np.float32))]:
    x = np.zeros(shape, np.float32)
    out = F.roi_align(F.convert(F.const(x, list(shape), F.NCHW, F.float), F.NC4HW4),
                      F.const(rois, list(rois.shape), F.NCHW, F.float), 2, 2, 1.0, 2, False, F.Pooling_Mode.AVEPOOL)
    expected = (len(rois), 1, 2, 2)
    try:
        got = F.convert(out, F.NCHW).read()
        print(shape, "K =", len(rois), "expected shape", expected, "(zeros), got", got.shape, got.ravel())
    except Exception as error:
        print(shape, "K =", len(rois), "expected shape", expected, "(zeros), got", type(error).__name__, error)
