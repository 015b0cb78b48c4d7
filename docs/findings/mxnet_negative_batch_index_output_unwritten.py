"""MXNet 1.9.1: ROIAlign's documented "batch index < 0 -> that RoI's output is 0" writes one element.

The operator's doc: "If roi batchid is less than 0, it will be ignored, and the corresponding
output will be set to 0." ROIAlignForward does `top_data[n] = 0; continue;` for RoI n: it zeroes
the n-th element of the whole output (an element of RoI 0's block when n < C*h*w) and leaves
RoI n's own C*h*w block as the buffer held it. (Outside torchvision's contract, which takes batch
indices in [0, N); MXNet's own documented behaviour.)
Expected: RoI 0 = the mean of a constant map of 7 = 7 everywhere; RoI 1 (batch -1) = 0 everywhere.
Needs numpy < 1.24. Run: python mxnet_negative_batch_index_output_unwritten.py
"""
import mxnet as mx
import numpy as np

data = mx.nd.array(np.full((1, 1, 4, 4), 7.0))
rois = mx.nd.array([[0, 0.0, 0.0, 3.0, 3.0], [-1, 0.0, 0.0, 3.0, 3.0]])
for trial in range(3):
    mx.nd.array(np.full((2, 1, 2, 2), 123.0)).wait_to_read()  # leave a value in the allocator's pool
    out = mx.nd.contrib.ROIAlign(data, rois, pooled_size=(2, 2), spatial_scale=1.0, sample_ratio=2).asnumpy()
    print("expected: RoI 0", [7.0] * 4, "RoI 1", [0.0] * 4)
    print("got:      RoI 0", out[0].ravel().tolist(), "RoI 1", out[1].ravel().tolist())
