"""MXNet 1.9.1: ROIAlign refuses spatial_scale > 1 (ROIAlignParam: set_range(0.0, 1.0)).

Expected (torchvision.ops.roi_align, the RoIAlign definition: any positive scale): a feature map
twice the image's resolution, scale 2, box (0.5, 0.5, 1.5, 1.5) -> (1, 1, 3, 3) on the map, one
bin, one sample at its centre (y, x) = (2, 2); on the ramp 4 * y + x that is 10.
Got: MXNetError "value 2 for Parameter spatial_scale exceed bound [0,1]".
Needs numpy < 1.24. Run: python mxnet_spatial_scale_above_one_refused.py
"""
import mxnet as mx
import numpy as np

image = np.arange(16.0).reshape(1, 1, 4, 4)  # value = 4 * y + x
# Box (0.5, 0.5, 1.5, 1.5) * 2 = (1, 1, 3, 3); the one sample of the one bin is its centre (2, 2).
print("expected:", 4 * 2 + 2)
try:
    out = mx.nd.contrib.ROIAlign(mx.nd.array(image), mx.nd.array([[0, 0.5, 0.5, 1.5, 1.5]]), pooled_size=(1, 1),
                                 spatial_scale=2.0, sample_ratio=1)
    print("got:", out.asnumpy().ravel())
except mx.base.MXNetError as error:
    print("got: MXNetError:", str(error).splitlines()[0])
