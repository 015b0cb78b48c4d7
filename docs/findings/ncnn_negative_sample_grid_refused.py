"""ncnn ROIAlign (version 1, aligned=1, adaptive grid) raises on a box inverted along one axis.

x1 > x2 with half-pixel coordinates: the adaptive grid along x is ceil((x2 - x1) / pooled_w) = -1,
along y 1. torchvision's C++ ROIAlign / detectron2 (which version=1 follows) and ONNX's reference
take no sample there and output 0; ncnn's layer throws std::length_error instead (raised by the
Python binding as ValueError: cannot create std::vector larger than max_size()).

The same refusal meets a box inverted along y with zero width along x (x1 = x2), where the
definition's grid is (-1, 0): ncnn's float32 box ends can come out one ulp apart (here
36.5714302 * 7/256 = 1.0000000447), the width's grid is then 1, and the layer raises (the
second call below; found by a fuzz campaign).
Found with ncnn 1.0.20261020 (PyPI, x86-64 Linux). Needs: ncnn, numpy.
"""
import ncnn
import numpy as np


def pool(pooled, spatial_scale, image, roi):
    """ROIAlign version 1, aligned, adaptive grid, on one [C, H, W] image and one (x1, y1, x2, y2) box."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.load_param_mem("7767517\n3 3\nInput image 0 1 image\nInput roi 0 1 roi\n"
                       f"ROIAlign roialign 2 1 image roi pooled 0={pooled} 1={pooled} 2={spatial_scale} 3=0 4=1 5=1\n")
    ex = net.create_extractor()
    ex.input("image", ncnn.Mat(image))
    ex.input("roi", ncnn.Mat(np.array(roi, dtype=np.float32)))
    try:
        status, out = ex.extract("pooled")
        return f"status {status} {np.array(out)}"
    except Exception as e:  # observed: ValueError: cannot create std::vector larger than max_size()
        return f"{type(e).__name__}: {e}"


inverted_along_x = pool(2, 1.0, np.arange(16, dtype=np.float32).reshape(1, 4, 4), [3.0, 1.0, 1.0, 3.0])
print("expected (torchvision / detectron2 semantics): zeros of shape (1, 2, 2); got:", inverted_along_x)
zero_width = pool(1, 0.02734375, np.ones((1, 1, 1), dtype=np.float32), [36.57143020629883, 36.57143020629883,
                                                                         36.57143020629883, 0.0])
print("expected: zeros of shape (1, 1, 1); got:", zero_width)
