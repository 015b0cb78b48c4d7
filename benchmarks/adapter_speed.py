"""An adapter's RoIAlign against torchvision's CPU kernel in one process, on the P2 box head.

    PYTHONPATH=. python -m roialign_suite.benchmarks.adapter_speed mxnet|ipex [--rounds 5]

Features ``[2, 256, 200, 304]`` float32, 1024 random boxes of 32..512 image pixels at scale
0.25, output 7x7, sampling ratio 2, aligned=False; median of ``rounds`` after one warm-up
call, forward and forward + backward. ``adapter`` times ``implementations/<name>.roi_align``
(its conversions inside the timed call); for MXNet ``kernel only`` times
``mx.nd.contrib.ROIAlign`` on NDArrays converted beforehand. torchvision's own CPU kernel is
timed as ``torch.ops.torchvision.roi_align`` (for IPEX under ``torch.inference_mode()``,
where IPEX's AutogradCPU registration is skipped and torchvision's kernel runs).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time

import torch


def p2_inputs(seed: int = 0):
    """``(features [2, 256, 200, 304], rois [1024, 5])``, float32, boxes 32..512 px inside an 800x1216 image."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 256, 200, 304, generator=g)
    size = 32 + torch.rand(1024, 2, generator=g) * 480
    corner = torch.rand(1024, 2, generator=g) * (torch.tensor([1216.0, 800.0]) - size)
    batch = torch.randint(0, 2, (1024, 1), generator=g).float()
    return features, torch.cat([batch, corner, corner + size], 1)


def median_ms(call, rounds: int) -> float:
    call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=("mxnet", "ipex"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    adapter = importlib.import_module(f"roialign_suite.implementations.{args.name}")
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    features, rois = p2_inputs()
    params = (7, 0.25, 2, False)
    x = features.clone().requires_grad_()

    def fwd_bwd(align):
        return lambda: torch.autograd.grad(align(x, rois, *params).sum(), x)

    def torchvision_forward():
        with torch.inference_mode():
            return torch.ops.torchvision.roi_align(features, rois, 0.25, 7, 7, 2, False)

    rows = {"adapter forward": median_ms(lambda: adapter.roi_align(features, rois, *params), args.rounds),
            "adapter forward+backward": median_ms(fwd_bwd(adapter.roi_align), args.rounds),
            "torchvision forward": median_ms(torchvision_forward, args.rounds)}
    if args.name == "mxnet":
        mx = adapter._mx()
        data, mx_rois = mx.nd.array(features.numpy()), mx.nd.array(rois.numpy())
        rows["kernel only forward"] = median_ms(lambda: mx.nd.contrib.ROIAlign(
            data, mx_rois, pooled_size=(7, 7), spatial_scale=0.25, sample_ratio=2).wait_to_read(), args.rounds)
    else:
        from roialign_suite.implementations.ipex import IPEX_FORWARD_EVENT

        with torch.profiler.profile() as profile:
            torchvision_forward()
        assert all(e.name != IPEX_FORWARD_EVENT for e in profile.events()), "torchvision timing ran IPEX's kernel"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds}")
    for name, ms in rows.items():
        print(f"{name:28s} {ms:9.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
