"""Where our forward's time goes on the P2 box head: kernel-only experiments, each against the shipped kernel.

    python -m roialign_suite.benchmarks.where_time_goes [--quick] [--rounds 7] [--threads 2]

On the ``box-head-p2-fwd`` workload's map (channels_last, so the NHWC kernel
runs without a conversion) and boxes (1024 RoIs, float32, ``--threads``), median of ``--rounds``; every variant's output is checked
bit for bit against the shipped kernel's before it is timed:

- ``RoI order`` (shipped): :func:`impl.kernels.roi_align_forward_nhwc`, RoIs
  in ``impl.ops``'s locality order, into an output already faulted in.
- ``bin rows``: the shipped kernel's bin rows (``impl.kernels._pool_bin_row``,
  so the same sums), each work item one RoI's bin row
  (:func:`forward_in_map_order`), visited in RoI order or in **map order**
  (by their first map row, so a band of rows stays in cache while every
  sample needing it is taken); each with and without the prefetch.
- ``taps in cache``: the shipped kernel on the same RoIs shrunk 16-fold
  about the origin: the same samples (sampling ratio 2: 196 per RoI), all
  taps within a corner of the map that stays in cache.
- ``one thread``: the shipped kernel on one thread.
- ``fresh output``: a new array per call, its pages faulted in by the
  kernel's own writes; ``+ faulted first`` faults them in from this thread
  first, as ``impl.storage.new_tensor`` does.
- ``conversion``: ``impl.kernels.nchw_to_nhwc`` of the contiguous map,
  beside a plain copy of the same bytes (numpy, one thread; torch, the
  current threads).

``benchmarks/README.md``, "Traffic", gives the figures and what they mean.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import numba
import numpy as np
import torch
from numba import njit, prange

from roialign_suite import options
from roialign_suite.benchmarks.workloads import all_workloads, build_inputs
from roialign_suite.impl import kernels
from roialign_suite.impl.storage import PAGE_BYTES
from roialign_suite.impl.threads import kernel_threads
from roialign_suite.reference.roi_align import roi_geometry

WORKLOAD = "box-head-p2-fwd"
SHRINK = 16


@njit(cache=True, parallel=True)
def forward_in_map_order(features, scale, rois, items, pooled_h, pooled_w, sampling_ratio, aligned, out, prefetch):
    """:func:`impl.kernels.roi_align_forward_nhwc` on one NHWC map, with work item ``items[i] = k * pooled_h + ph``
    (RoI ``k``'s bin row ``ph``) in the order given: each output element summed as there, term for term."""
    scales = np.full(kernels.MAX_LEVELS, scale)
    levels = np.zeros(rois.shape[0], np.int64)
    channels = features.shape[3]
    for i in prange(items.shape[0]):
        k = items[i] // pooled_h
        ph = items[i] % pooled_h
        level_map, b, ys, wys, xs, wxs, grid_h, grid_w, count = kernels._roi_on_its_level(
            k, rois, levels, scales, features, features, features, features, 1, pooled_h, pooled_w,
            sampling_ratio, aligned)
        acc = kernels._sum_buffer(features, channels)
        kernels._pool_bin_row(acc, level_map[b], ys, wys, xs, wxs, grid_h, grid_w, count, ph, out[k], prefetch)


def map_order(rois: np.ndarray, scale: float, height: int, pooled: int, aligned: bool) -> np.ndarray:
    """Bin-row items ``k * pooled + ph`` sorted by (image, first map row of the bin row)."""
    geometry = [roi_geometry(tuple(roi[1:]), (pooled, pooled), scale, 0, aligned) for roi in rois]  # grid unused
    top = np.array([[g.start_h + ph * g.bin_h for ph in range(pooled)] for g in geometry]).reshape(len(rois), pooled)
    row = np.clip(np.floor(top), 0, height - 1).astype(np.int64)
    key = (rois[:, :1].astype(np.int64) * height + row).ravel()
    return np.argsort(key, kind="stable").astype(np.int64)


def _median_ms(call: Callable[[], None], rounds: int) -> float:
    call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(quick: bool = False, rounds: int = 7) -> List[Dict]:
    """Rows ``{"experiment", "ms"}``, in the order of the module docstring."""
    workload = next(w for w in all_workloads() if w.name == WORKLOAD)
    workload = workload.quick() if quick else workload
    inputs = build_inputs(workload)
    contiguous = inputs.features[0]
    features = contiguous.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).numpy()
    rois = inputs.rois.double().numpy()
    scale, pooled, ratio, aligned = workload.scales[0], workload.output_size, workload.sampling_ratio, workload.aligned
    levels = np.zeros(len(rois), np.int64)
    scales = np.full(kernels.MAX_LEVELS, scale)
    order = np.lexsort((rois[:, 2] + rois[:, 4], rois[:, 0])).astype(np.int64)
    shape = (len(rois), workload.channels, pooled, pooled)
    expected = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.float32)

    def shipped(boxes=rois, into=None):
        with kernel_threads(), numba.parallel_chunksize(1):
            kernels.roi_align_forward_nhwc(features, features, features, features, scales, boxes, levels, order,
                                           pooled, pooled, ratio, aligned, out if into is None else into)

    orders = {"RoI": (order[:, None] * pooled + np.arange(pooled)[None, :]).ravel(),
              "map": map_order(rois, scale, features.shape[1], pooled, aligned)}

    def bin_rows(which: str, prefetch: bool):
        with kernel_threads(), numba.parallel_chunksize(1):
            forward_in_map_order(features, scale, rois, orders[which], pooled, pooled, ratio, aligned, out, prefetch)

    def fresh(fault_first: bool):
        array = np.empty(shape, np.float32)
        if fault_first:
            array.reshape(-1).view(np.uint8)[::PAGE_BYTES] = 0
        shipped(into=array)

    shipped(into=expected)
    rows = [{"experiment": "RoI order (shipped)", "ms": _median_ms(shipped, rounds)}]
    for which in orders:
        for prefetch in (True, False):
            out[:] = 0.0
            bin_rows(which, prefetch)
            if not np.array_equal(out, expected):
                raise AssertionError(f"bin rows in {which} order: the output differs from the shipped kernel's")
            rows.append({"experiment": f"bin rows, {which} order, prefetch {'on' if prefetch else 'off'}",
                         "ms": _median_ms(lambda: bin_rows(which, prefetch), rounds)})
    shrunk = rois.copy()
    shrunk[:, 1:] /= SHRINK
    rows.append({"experiment": f"taps in cache (boxes / {SHRINK})", "ms": _median_ms(lambda: shipped(shrunk), rounds)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows.append({"experiment": "one thread", "ms": _median_ms(shipped, rounds)})
    finally:
        torch.set_num_threads(threads)
    rows.append({"experiment": "fresh output", "ms": _median_ms(lambda: fresh(False), rounds)})
    rows.append({"experiment": "fresh output + faulted first", "ms": _median_ms(lambda: fresh(True), rounds)})
    source = contiguous.numpy()
    target = np.empty(features.shape, np.float32)
    with kernel_threads():
        rows.append({"experiment": "conversion (nchw_to_nhwc)", "ms": _median_ms(lambda: kernels.nchw_to_nhwc(source, target), rounds)})
    copy = np.empty_like(source)
    rows.append({"experiment": "copy of the same bytes (numpy)", "ms": _median_ms(lambda: np.copyto(copy, source), rounds)})
    copy_t, source_t = torch.from_numpy(copy), torch.from_numpy(source)
    rows.append({"experiment": "copy of the same bytes (torch)", "ms": _median_ms(lambda: copy_t.copy_(source_t), rounds)})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="python -m roialign_suite.benchmarks.where_time_goes",
                                   description=__doc__.splitlines()[0])
    options.add_to_argparse(parser, options.WHERE_TIME_GOES, rounds=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.roialign_threads)
    print(f"{WORKLOAD}, channels_last, {args.roialign_threads} threads, median of {args.roialign_rounds}"
          + (" (quick: toy sizes)" if args.roialign_quick else ""))
    for row in measure(bool(args.roialign_quick), args.roialign_rounds):
        print(f"{row['experiment']:36s} {row['ms']:8.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
