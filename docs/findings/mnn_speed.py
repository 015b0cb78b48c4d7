"""MNN's RoIAlign vs torchvision.ops.roi_align on the P2 box-head workload, in one process.

features [2, 256, 200, 304] float32 (stride 4: an 800 x 1216 image), 1024 random
boxes of 32..512 image px, spatial_scale 0.25, output 7 x 7, sampling_ratio 2,
aligned=False. Median of 5 timed calls after one warm-up, per row:

- torchvision forward; forward + backward (sum of the output's gradient, autograd)
- adapter (implementations/mnn.py): conversions inside the timed call (NCHW ->
  NC4HW4 of the map, boxes -> MNN constant, output back to NCHW and to torch)
- MNN kernel alone: map already NC4HW4 and materialised (fix_as_const), timed from
  roi_align to the NCHW read of the output (the output conversion stays inside)

    PYTHONPATH=. python docs/findings/mnn_speed.py [THREADS]
"""
import statistics
import sys
import time

import numpy as np
import torch
import torchvision

from roialign_suite.implementations import mnn

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()


def median_s(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    import MNN.expr as F
    torch.set_num_threads(THREADS)
    F.set_thread_number(THREADS)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 256, 200, 304, generator=gen)
    size = 32 + torch.rand(1024, 2, generator=gen) * 480
    corner = torch.rand(1024, 2, generator=gen) * (torch.tensor([1216.0, 800.0]) - size)
    boxes = torch.cat([torch.randint(0, 2, (1024, 1), generator=gen).float(), corner, corner + size], 1)
    args = ((7, 7), 0.25, 2, False)
    g = torch.randn(1024, 256, 7, 7, generator=gen)

    def fwd_bwd(f):
        xr = x.clone().requires_grad_()
        f(xr, boxes, *args).backward(g)

    x4 = F.convert(F.const(x.numpy(), list(x.shape), F.NCHW, F.float), F.NC4HW4)
    x4.fix_as_const()
    rois = F.const(boxes.numpy(), [1024, 5], F.NCHW, F.float)

    def kernel():
        F.convert(F.roi_align(x4, rois, 7, 7, 0.25, 2, False, F.Pooling_Mode.AVEPOOL), F.NCHW).read()

    rows = [
        ("torchvision forward", lambda: torchvision.ops.roi_align(x, boxes, *args)),
        ("mnn adapter forward", lambda: mnn.roi_align(x, boxes, *args)),
        ("mnn kernel forward", kernel),
        ("torchvision forward+backward", lambda: fwd_bwd(torchvision.ops.roi_align)),
        ("mnn adapter forward+backward", lambda: fwd_bwd(mnn.roi_align)),
    ]
    print(f"threads {THREADS}; agreement with torchvision: max |diff| "
          f"{(mnn.roi_align(x, boxes, *args) - torchvision.ops.roi_align(x, boxes, *args)).abs().max().item():.2e}")
    for name, fn in rows:
        print(f"{name:32s} {1e3 * median_s(fn):9.1f} ms")


if __name__ == "__main__":
    main()
