"""ncnn ROIAlign reads outside a feature map with H = 0: garbage values, or SIGSEGV.

With version=1 (torchvision's semantics) a sample at -1 <= y <= 0 counts and is clamped to
row 0, but a map with H = 0 has no row 0: the layer reads whatever memory lies there. The
definition (and torchvision's Python path) give zeros. Which of the two you see depends on the
blob: a Mat made from an empty numpy array returns tiny garbage values (denormals, varying from
run to run); Mat(w=3, h=0, c=3) kills the process with SIGSEGV. W = 0 is the same along x.
Found by roialign-suite's contract property on zero-size maps (a fuzz campaign).
Found with ncnn 1.0.20261020 (PyPI). Needs: ncnn, numpy.
"""
import subprocess
import sys

import ncnn
import numpy as np

PARAM = """7767517
3 3
Input image 0 1 image
Input roi 0 1 roi
ROIAlign roialign 2 1 image roi pooled 0=7 1=7 2=1.0 3=2 4=0 5=1
"""


def pool(image):
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.load_param_mem(PARAM)
    ex = net.create_extractor()
    ex.input("image", image)
    ex.input("roi", ncnn.Mat(np.array([0.0, -1.5, 1.5, -0.5], dtype=np.float32)))  # samples at -1 <= y <= 0
    status, out = ex.extract("pooled")
    return status, np.array(out)


if __name__ == "__main__" and sys.argv[1:] == ["--blob"]:
    pool(ncnn.Mat(w=3, h=0, c=3))
    sys.exit(0)

empty = np.zeros((3, 0, 3), dtype=np.float32)  # [C = 3, H = 0, W = 3]
nonzero = [int(np.count_nonzero(pool(ncnn.Mat(empty))[1])) for _ in range(10)]
print("expected: zeros; got nonzero elements per call (of 147):", nonzero)
child = subprocess.run([sys.executable, __file__, "--blob"])
print("expected: exit status 0; got", child.returncode, "(-11: SIGSEGV)")
