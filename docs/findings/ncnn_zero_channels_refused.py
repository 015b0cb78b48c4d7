"""ncnn ROIAlign fails (status -100) on a feature map with 0 channels.

The output blob [C = 0, pooled_h, pooled_w] is empty, and ROIAlign::forward returns -100 when
top_blob.empty(); torchvision returns an empty [K, 0, h, w] tensor. Zero-channel maps arise in
generic code paths (e.g. channel-sliced features). Found with ncnn 1.0.20261020 (PyPI).
Needs: ncnn, numpy.
"""
import ncnn
import numpy as np

PARAM = """7767517
3 3
Input image 0 1 image
Input roi 0 1 roi
ROIAlign roialign 2 1 image roi pooled 0=2 1=2 2=1.0 3=2 4=0 5=1
"""
net = ncnn.Net()
net.opt.use_vulkan_compute = False
net.load_param_mem(PARAM)
ex = net.create_extractor()
ex.input("image", ncnn.Mat(w=4, h=4, c=0))  # [C = 0, H = 4, W = 4]
ex.input("roi", ncnn.Mat(np.array([0.5, 0.5, 2.5, 2.5], dtype=np.float32)))
status, out = ex.extract("pooled")
print("expected: status 0 and an empty output (c = 0)")
print("got: status", status, "(c, h, w) =", (out.c, out.h, out.w))  # observed: status -100
