"""Where the forward's gather path stops paying: both paths timed against RoI count, and the cost model fitted.

``roialign-suite crossover [--out DIR]`` times our forward on the P2 box head
(the ``box-head-p2-fwd`` workload's map and boxes: 2x256x200x304 float32,
7x7, sampling 2, 2 threads) at each RoI count of :data:`ROI_COUNTS`, with
each path forced (:func:`impl.cost_model.forward_path`) and with the
model's choice. It fits the model of :mod:`impl.cost_model` to the forced
times by least squares:

- gather:  ``t = GATHER_NS * taps``
- convert: ``t = CONVERT_NS * map_bytes + NHWC_NS * taps``

prints the fitted constants (to put in ``impl/cost_model.py``), the measured
crossover (the first count from which converting is faster) and the ones
predicted by the constants in use and by the fit, and writes ``crossover.json`` and ``crossover.png`` to ``--out`` (the
README's plot is ``docs/img/crossover.png``). Times are wall-clock medians
at 2 threads on this machine, so the constants are ns of wall time there;
only their ratios steer the choice.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from roialign_suite import impl, options
from roialign_suite.benchmarks.workloads import Workload, all_workloads, build_inputs
from roialign_suite.impl import cost_model
from roialign_suite.impl.inputs import samples_per_roi

ROI_COUNTS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
PATHS = ("gather", "convert", "auto")
WORKLOAD = "box-head-p2-fwd"


def _median_s(call, rounds: int) -> float:
    call()  # warm: compile, caches, scratch buffers
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(workload: Workload, counts: Sequence[int], rounds: int = 5) -> List[Dict]:
    """One row per RoI count: ``rois``, ``taps``, ``map_bytes`` and each path's median seconds."""
    features = build_inputs(workload).features[0]
    rows = []
    for count in counts:
        inputs = build_inputs(dataclasses.replace(workload, rois_per_image=count // workload.images))
        rois = inputs.rois
        samples = samples_per_roi(rois.double().numpy(), np.zeros(len(rois), np.int64), workload.scales,
                                  (workload.output_size,) * 2, workload.sampling_ratio, workload.aligned)
        row = {"rois": len(rois), "taps": float(samples.sum()) * workload.channels,
               "map_bytes": features.numel() * features.element_size()}
        for path in PATHS:
            with cost_model.forward_path(path):
                row[path] = _median_s(lambda: impl.roi_align(
                    features, rois, workload.output_size, workload.scales[0], workload.sampling_ratio,
                    workload.aligned), rounds)
        rows.append(row)
        print(f"{row['rois']:6d} RoIs: gather {row['gather'] * 1e3:8.1f} ms, convert {row['convert'] * 1e3:8.1f} ms,"
              f" auto {row['auto'] * 1e3:8.1f} ms", flush=True)
    return rows


def fit(rows: Sequence[Dict]) -> Dict[str, float]:
    """``GATHER_NS``, ``NHWC_NS`` and ``CONVERT_NS`` fitted to the forced paths' times by least squares
    on relative errors (so the small counts, where the choice matters most, weigh as much as the large)."""
    taps = np.array([r["taps"] for r in rows])
    gather = np.array([r["gather"] for r in rows]) * 1e9
    convert = np.array([r["convert"] for r in rows]) * 1e9
    ratio = taps / gather
    gather_ns = float(ratio.sum() / (ratio @ ratio))
    slope, intercept = np.polyfit(taps, convert, 1, w=1.0 / convert)
    return {"GATHER_NS": gather_ns, "NHWC_NS": float(slope), "CONVERT_NS": float(intercept / rows[0]["map_bytes"])}


def in_use() -> Dict[str, float]:
    """The constants :mod:`impl.cost_model` decides with."""
    return {name: getattr(cost_model, name) for name in ("GATHER_NS", "NHWC_NS", "CONVERT_NS")}


def predicted_crossover(constants: Dict[str, float], rows: Sequence[Dict]) -> float:
    """RoI count where the model's two lines cross (taps per RoI as in the measured rows)."""
    taps_per_roi = sum(r["taps"] for r in rows) / sum(r["rois"] for r in rows)
    saved_per_tap = constants["GATHER_NS"] - constants["NHWC_NS"]
    return constants["CONVERT_NS"] * rows[0]["map_bytes"] / (saved_per_tap * taps_per_roi)


def measured_crossover(rows: Sequence[Dict]) -> Optional[int]:
    """The first measured RoI count from which converting is faster at every larger count."""
    for i, row in enumerate(rows):
        if all(r["convert"] < r["gather"] for r in rows[i:]):
            return row["rois"]
    return None


def plot(rows: Sequence[Dict], constants: Dict[str, float], path: Path) -> None:
    """The measured times of each path, and the lines and crossover of the model with ``constants``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rois = [r["rois"] for r in rows]
    taps = np.array([r["taps"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, marker in (("gather", "o"), ("convert", "s"), ("auto", "x")):
        ax.plot(rois, [r[name] * 1e3 for r in rows], marker=marker, linestyle="-" if name != "auto" else ":",
                label=f"{name} (measured)")
    ax.plot(rois, constants["GATHER_NS"] * taps / 1e6, "--", color="C0", alpha=0.5, label="gather (cost model)")
    ax.plot(rois, (constants["CONVERT_NS"] * rows[0]["map_bytes"] + constants["NHWC_NS"] * taps) / 1e6, "--",
            color="C1", alpha=0.5, label="convert (cost model)")
    ax.axvline(predicted_crossover(constants, rows), color="grey", linestyle="--",
               label=f"predicted crossover ({predicted_crossover(constants, rows):.0f} RoIs)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("RoIs (P2, 2x256x200x304, float32, 7x7, sampling 2)")
    ax.set_ylabel("forward, ms (median, 2 threads)")
    ax.set_title("Our forward: gather from NCHW vs convert to channels-last")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = options.OneLineParser(prog="roialign-suite crossover", description=__doc__.splitlines()[0])
    options.add_to_argparse(parser, options.CROSSOVER, out=Path("report"), rounds=5)
    parser.add_argument("--counts", default=",".join(map(str, ROI_COUNTS)), help="RoI counts, comma-separated")
    args = parser.parse_args(argv)
    args.out, args.rounds, args.threads = args.roialign_out, args.roialign_rounds, args.roialign_threads
    torch.set_num_threads(args.threads)
    workload = next(w for w in all_workloads() if w.name == WORKLOAD)
    rows = measure(workload, [int(c) for c in args.counts.split(",")], args.rounds)
    fitted, used = fit(rows), in_use()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crossing = {"predicted_in_use": predicted_crossover(used, rows), "predicted_fit": predicted_crossover(fitted, rows),
                "measured": measured_crossover(rows)}
    (out / "crossover.json").write_text(
        json.dumps({"rows": rows, "fit": fitted, "in_use": used, "crossover": crossing}, indent=1))
    plot(rows, used, out / "crossover.png")
    print("this run's fit (for impl/cost_model.py): " + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.items()))
    print("in use: " + ", ".join(f"{k} = {v:.4g}" for k, v in used.items()))
    print(f"crossover: predicted {crossing['predicted_in_use']:.0f} RoIs by the constants in use, "
          f"{crossing['predicted_fit']:.0f} by this run's fit; measured {crossing['measured']} RoIs "
          "(the first count from which converting is faster)")
    print(f"wrote {out / 'crossover.json'} and {out / 'crossover.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
