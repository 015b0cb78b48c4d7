"""MXNet 1.9.1: ROIAlign on a feature map with H = 0 (or W = 0) reads outside the map and crashes.

Expected (the RoIAlign definition: no pixel to sample): zeros of shape [K, C, h, w] = [1, 1, 1, 1].
Got: SIGSEGV; MXNet's built-in segfault logger prints "Segmentation fault: 11" and exits with
status 255, or aborts ("terminate called without an active exception"), run to run.
pre_calc_for_bilinear_interpolate clamps the sample to row H - 1 = -1 and the sum reads it.
Needs numpy < 1.24. Run: python mxnet_empty_map_segfault.py   (it crashes on purpose)
"""
import mxnet as mx
import numpy as np

print("expected:", np.zeros((1, 1, 1, 1)).ravel())
data = mx.nd.array(np.zeros((1, 1, 0, 1)))  # N=1, C=1, H=0, W=1
out = mx.nd.contrib.ROIAlign(data, mx.nd.array([[0, 0.0, 0.0, 1.0, 1.0]]), pooled_size=(1, 1), spatial_scale=1.0,
                             sample_ratio=2)
print("got:", out.asnumpy().ravel())  # never printed
