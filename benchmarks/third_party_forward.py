"""Registry entries' forward against ``torchvision.ops.roi_align``, timed in one process.

    python -m roialign_suite.benchmarks.third_party_forward ncnn opencv-dnn [--rounds 5] [--threads 2]

The Mask R-CNN box head on P2: features ``[2, 256, 200, 304]`` float32 (an
800x1216 image at stride 4), 1024 random boxes of 32..512 image pixels
(uniform sides, wholly inside the image, uniform batch index), scale 0.25,
output 7x7, sampling_ratio 2, aligned=False. Each entry's ``roi_align`` is
timed as the suite calls it (CPU tensors in and out, the adapter's conversions
of layout and box format inside the timed call), after one warm-up call,
in alternating rounds with torchvision (so a noisy neighbour slows both alike);
the table gives medians and each entry's max |error| against torchvision.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List

import torch

from roialign_suite.implementations import registry

IMAGE = (800, 1216)
FEATURES = (2, 256, 200, 304)
SCALE, OUTPUT, SAMPLING = 0.25, (7, 7), 2


def box_head_inputs(num_boxes: int = 1024, seed: int = 0):
    """(features [2, 256, 200, 304] float32, boxes [K, 5]) of the P2 box-head workload."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(FEATURES, generator=g)
    sides = 32 + 480 * torch.rand(num_boxes, 2, generator=g)  # (w, h) in 32..512 px
    corner = torch.rand(num_boxes, 2, generator=g) * (torch.tensor([IMAGE[1], IMAGE[0]]) - sides)
    batch = torch.randint(0, FEATURES[0], (num_boxes, 1), generator=g).float()
    return features, torch.cat([batch, corner, corner + sides], 1)


def median_times(calls: Dict[str, callable], rounds: int) -> Dict[str, float]:
    """Median wall-clock seconds per call, alternating the calls round by round after one warm-up each."""
    for call in calls.values():
        call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> None:
    import torchvision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="registry names (ncnn, opencv-dnn, onnxruntime, ...)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (torchvision)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    features, boxes = box_head_inputs()
    entries = {name: registry.resolve(name) for name in args.names}
    for entry in entries.values():
        if entry.unavailable:
            raise SystemExit(f"{entry.name}: {entry.unavailable}")
    want = torchvision.ops.roi_align(features, boxes, OUTPUT, SCALE, SAMPLING, False)
    calls = {"torchvision": lambda: torchvision.ops.roi_align(features, boxes, OUTPUT, SCALE, SAMPLING, False)}
    for name, entry in entries.items():
        calls[name] = (lambda e: lambda: e.roi_align(features, boxes, OUTPUT, SCALE, SAMPLING, False))(entry)
    medians = median_times(calls, args.rounds)
    print(f"box head P2 forward: features {list(FEATURES)} float32, {len(boxes)} boxes, scale {SCALE}, "
          f"output {OUTPUT}, sampling {SAMPLING}, aligned=False; median of {args.rounds} after a warm-up; "
          f"torch threads {args.threads}")
    print(f"{'implementation':<14} {'median ms':>10} {'/ torchvision':>14} {'max |err| vs torchvision':>26}")
    for name, seconds in medians.items():
        err = 0.0 if name == "torchvision" else float((entries[name].roi_align(
            features, boxes, OUTPUT, SCALE, SAMPLING, False) - want).abs().max())
        print(f"{name:<14} {seconds * 1e3:>10.1f} {seconds / medians['torchvision']:>14.2f} {err:>26.2e}")


if __name__ == "__main__":
    main()
