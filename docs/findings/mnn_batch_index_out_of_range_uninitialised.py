"""MNN 3.6.1 RoIAlign: a RoI whose batch index is outside [0, N) returns uninitialised memory.

CPUROIAlign::onExecute returns NOT_SUPPORT (its MNN_ERROR line "batch index out of range"
is not printed by the PyPI build), but Var.read() still succeeds and hands back the output
buffer as it was, unwritten (values differ from run to run). torchvision raises; an error is expected here too.
"""
import numpy as np
import MNN.expr as F

x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # N = 1
rois = np.array([[1, 0.0, 0.0, 3.0, 3.0]], np.float32)    # batch index 1: no such image
out = F.roi_align(F.convert(F.const(x, [1, 1, 4, 4], F.NCHW, F.float), F.NC4HW4),
                  F.const(rois, [1, 5], F.NCHW, F.float),
                  2, 2, 1.0, 2, False, F.Pooling_Mode.AVEPOOL)
print("expected: an error; got", F.convert(out, F.NCHW).read().ravel())
