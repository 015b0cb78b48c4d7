"""MNN 3.6.1 RoIAlign: SIGSEGV for a box inverted along both axes with aligned=True and an adaptive grid.

The box (x1, y1, x2, y2) = (3, 3, 1, 1) has negative width and height. The adaptive grids
ceil(-2 / 2) = -1 along each axis make preCalcBilinearInterpolate build no sample entries,
but MNNRoiAlignAvg then reads grid_h * grid_w = 1 entry of the empty vecPos per bin:
the process dies (segmentation fault, exit status -11). torchvision, Detectron2 and ONNX's
reference take no samples (count = max(grid_h * grid_w, 1)) and return 0.
"""
import numpy as np
import MNN.expr as F

x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
rois = np.array([[0, 3.0, 3.0, 1.0, 1.0]], np.float32)  # batch 0, x2 < x1 and y2 < y1
print("expected", np.zeros(4, np.float32), "(no samples); MNN crashes here:", flush=True)
out = F.roi_align(F.convert(F.const(x, [1, 1, 4, 4], F.NCHW, F.float), F.NC4HW4),
                  F.const(rois, [1, 5], F.NCHW, F.float),
                  2, 2, 1.0, 0, True, F.Pooling_Mode.AVEPOOL)  # pooled 2x2, scale 1, adaptive, aligned
print("got", F.convert(out, F.NCHW).read().ravel())
