"""Exploration of MNN's RoIAlign (via implementations/mnn.py) against the float64 reference.

Runs batches of random and edge-case ``RoIAlignCase``s, each batch in a child
process (MNN dies with SIGSEGV on some inputs); a batch that dies is rerun case
by case to name the crashing input. Per case: ``ok`` (within the suite's float32
bound plus its jump allowance), ``diverges`` (worst error / bound), ``nan``,
``raises`` or ``crash``. Uses the suite (not a standalone repro).

    PYTHONPATH=. python docs/findings/mnn_explore.py [NUM_RANDOM] [SEED]
"""
import json
import random
import subprocess
import sys
from collections import Counter


def cases(num_random, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(num_random):
        n, c, h, w = rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 12), rng.randint(1, 12)
        scale = rng.choice([1.0, 0.5, 0.25, 0.8, 2.0, 1 / 3])
        boxes = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice(["random", "random", "zero_w", "zero_both", "inverted_x", "inverted_both",
                               "outside", "huge", "tiny", "edge"])
            x1, y1 = rng.uniform(-3, w / scale + 3), rng.uniform(-3, h / scale + 3)
            x2, y2 = x1 + rng.uniform(0, 8 / scale), y1 + rng.uniform(0, 8 / scale)
            if kind == "zero_w": x2 = x1
            if kind == "zero_both": x2, y2 = x1, y1
            if kind == "inverted_x": x1, x2 = x2 + 1, x1
            if kind == "inverted_both": x1, x2, y1, y2 = x2 + 1, x1, y2 + 1, y1
            if kind == "outside": x1, x2 = w / scale + 5, w / scale + 9
            if kind == "huge": x1, y1, x2, y2 = -60.0, -40.0, 90.0, 70.0  # many pixels past the map
            if kind == "tiny": x2, y2 = x1 + 1e-3, y1 + 1e-3
            if kind == "edge": x1, y1, x2, y2 = -1 / scale, -1 / scale, w / scale, h / scale
            boxes.append((rng.randrange(n), round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3)))
        out.append(dict(shape=(n, c, h, w), boxes=tuple(boxes),
                        output_size=(rng.randint(1, 4), rng.randint(1, 4)), spatial_scale=scale,
                        sampling_ratio=rng.choice([-1, 0, 1, 2, 3, 8]), aligned=rng.random() < 0.5,
                        dtype="float32", layout=rng.choice(["contiguous", "contiguous", "permuted", "strided"]),
                        seed=rng.randrange(1000)))
    # zero sizes and K = 0
    for shape, boxes in [((1, 1, 4, 4), ()), ((1, 1, 0, 4), ((0, 0.0, 0.0, 2.0, 2.0),)),
                         ((1, 1, 4, 0), ((0, 0.0, 0.0, 2.0, 2.0),)), ((1, 0, 4, 4), ((0, 0.0, 0.0, 2.0, 2.0),)),
                         ((0, 1, 4, 4), ())]:
        for sr in (-1, 2):
            out.append(dict(shape=shape, boxes=boxes, output_size=(2, 2), sampling_ratio=sr, dtype="float32"))
    return out


def run_batch(batch):
    """In this process: each case's outcome."""
    import math
    import torch
    from roialign_suite.implementations import mnn
    from roialign_suite.properties.strategies import RoIAlignCase
    from roialign_suite.properties import tolerances
    arith = tolerances.Arithmetic(torch.float32, torch.float32, torch.float32)
    results = []
    for d in batch:
        case = RoIAlignCase(**{k: (tuple(map(tuple, v)) if k == "boxes" else v) for k, v in d.items()})
        try:
            got = case.run(mnn.roi_align).double()
        except Exception as e:
            results.append(("raises", f"{type(e).__name__}: {str(e)[:100]}"))
            continue
        oracle = tolerances.forward_oracle(case)
        if got.shape != oracle.value.shape:
            results.append(("shape", f"{tuple(got.shape)} != {tuple(oracle.value.shape)}"))
            continue
        if got.numel() == 0:
            results.append(("ok", ""))
            continue
        if torch.isnan(got).any():
            rows = sorted(set(torch.nonzero(torch.isnan(got))[:, 0].tolist()))
            results.append(("nan", f"rows {rows}"))
            continue
        bound = tolerances.forward_tolerance(case, oracle, arith) + tolerances.jump_allowance(case, arith)
        excess = ((got - oracle.value).abs() - bound)
        if (excess > 0).any():
            k = int(torch.nonzero(excess > 0)[0, 0])
            results.append(("diverges", f"row {k} err {(got - oracle.value).abs().max().item():.3g}"))
        else:
            results.append(("ok", ""))
    return results


def in_child(batch, timeout=300):
    p = subprocess.run([sys.executable, __file__, "--child"], input=json.dumps(batch), capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        return None, p.returncode
    # MNN prints to stdout too, without newlines ("call to readMap meet a error"): find our marker.
    return json.loads(p.stdout.rsplit("RESULT", 1)[1]), 0


def main():
    if sys.argv[1:] == ["--child"]:
        print("\nRESULT" + json.dumps(run_batch(json.loads(sys.stdin.read()))))
        return
    num, seed = (int(sys.argv[1]) if len(sys.argv) > 1 else 200), (int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    all_cases = cases(num, seed)
    tally, examples = Counter(), {}
    for start in range(0, len(all_cases), 25):
        batch = all_cases[start:start + 25]
        print(f"batch {start}", dict(tally), file=sys.stderr, flush=True)
        res, rc = in_child(batch)
        if res is None:  # rerun one by one to find the crashing inputs
            res = []
            for d in batch:
                r, rc = in_child([d])
                res.append(r[0] if r else ("crash", f"exit {rc}"))
        for d, (outcome, detail) in zip(batch, res):
            tally[outcome] += 1
            if outcome != "ok":
                examples.setdefault(outcome, []).append((d, detail))
    print(dict(tally))
    for outcome, items in examples.items():
        print(f"== {outcome}: {len(items)}")
        for d, detail in items[:6]:
            print("  ", detail, json.dumps({k: d[k] for k in d if k != "seed"}))


if __name__ == "__main__":
    main()
