"""First-call cost of our kernels: ``import impl`` and the Numba JIT compile.

``python -m roialign_suite.benchmarks.jit`` runs in a child process and prints JSON
``{"torch_import_s", "import_s", "first_forward_s", "first_backward_s"}``
for one tiny forward+backward, then ``every_variant_s`` for every kernel
variant the operators can call (:func:`every_variant`) and ``slowest_call_s``
/ ``slowest_call``: the longest single call among them (each compiles only
the variants it uses, so with an empty cache it is the longest wait any
first call makes): ``import_s`` is ``import impl`` once torch is
loaded (Numba and our modules), the part a torch user pays for us. :func:`measure` starts that child with ``NUMBA_CACHE_DIR``
pointing at a given folder: empty means a cold compile, populated means the
warm on-disk cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from roialign_suite import paths


def first_call() -> Dict[str, float]:
    """Seconds of one tiny forward and its backward through ``impl.roi_align`` (compiles on first use)."""
    import torch

    from roialign_suite import impl

    features = torch.rand(1, 4, 8, 8, requires_grad=True)
    boxes = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]])
    start = time.perf_counter()
    out = impl.roi_align(features, boxes, 2, 1.0, 2, False)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    torch.autograd.grad(out.sum(), features)
    return {"first_forward_s": forward_s, "first_backward_s": time.perf_counter() - start}


LAYOUTS = ("contiguous", "channels_last", "strided")


def _laid_out(x, layout: str):
    import torch

    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        return torch.cat([x, x], dim=3)[..., ::2]
    return x


DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")


def every_variant(dtype_names: Sequence[str] = DTYPE_NAMES, calls: Optional[Dict[str, float]] = None) -> int:
    """Run every kernel variant the operators can call, so each is compiled (or loaded from Numba's cache).

    A variant is a kernel specialised on its arrays' dtypes and layouts:
    each dtype (float32, float64, float16, bfloat16) x map layout
    (contiguous, channels_last, strided) x forward path (gather, convert),
    forward and backward, of one RoIAlign and of a four-level pooler.
    ``dtype_names`` narrows the dtypes (the quick smoke run takes float32
    only: it checks the pipeline, and each dtype is a fifth of a minute of
    cold compile). Returns the number of forward+backward pairs made;
    ``calls``, if given, receives each forward's and backward's seconds by label.
    """
    import torch

    from roialign_suite import impl
    from roialign_suite.impl.cost_model import forward_path

    timed = {} if calls is None else calls

    def timed_call(label, fn):
        start = time.perf_counter()
        result = fn()
        timed[label] = time.perf_counter() - start
        return result

    pairs = 0
    box = [[0.0, 1.0, 1.0, 6.0, 6.0]]
    for name in dtype_names:
        dtype = getattr(torch, name)
        for layout in LAYOUTS:
            for path in ("gather", "convert"):
                label = f"{name} {layout} {path}"
                with forward_path(path):
                    x = _laid_out(torch.rand(1, 4, 8, 8, dtype=dtype), layout).requires_grad_()
                    out = timed_call(f"roi_align forward, {label}",
                                     lambda: impl.roi_align(x, torch.tensor(box, dtype=dtype), 2, 1.0, 2, False))
                    timed_call(f"roi_align backward, {label}", lambda: torch.autograd.grad(out.sum(), x))
                    pyramid = [_laid_out(torch.rand(1, 4, 64 // 2**i, 64 // 2**i, dtype=dtype), layout).requires_grad_()
                               for i in range(4)]
                    boxes = [torch.tensor([[0.0, 0.0, 60.0, 60.0], [0.0, 0.0, 4.0, 4.0]], dtype=dtype)]
                    pooled = timed_call(f"pooler forward, {label}", lambda: impl.fpn_box_head_pooler()(pyramid, boxes))
                    timed_call(f"pooler backward, {label}", lambda: torch.autograd.grad(pooled.sum(), pyramid))
                    pairs += 2
    return pairs


def warm() -> int:
    """``roialign-suite warm``: compile every kernel variant into Numba's on-disk cache (or check it is there)."""
    start = time.perf_counter()
    calls = every_variant()
    print(f"roialign-suite warm: {calls} forward+backward calls over every kernel variant in "
          f"{time.perf_counter() - start:.1f} s (Numba's on-disk cache now holds them)", flush=True)
    return 0


def measure(cache_dir: Path, dtype_names: Sequence[str] = DTYPE_NAMES) -> Dict[str, float]:
    """Run :func:`main` in a fresh interpreter with Numba's cache in ``cache_dir``, its variants in ``dtype_names``."""
    env = paths.child_environment(dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DISABLE_JIT="0"))
    done = subprocess.run(
        [sys.executable, "-m", "roialign_suite.benchmarks.jit", *dtype_names], env=env, capture_output=True, text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"roialign_suite.benchmarks.jit child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(dtype_names: Sequence[str] = DTYPE_NAMES) -> None:
    start = time.perf_counter()
    import torch  # noqa: F401  (timed apart: every caller of a torch op has paid it already)

    figures = {"torch_import_s": time.perf_counter() - start}
    start = time.perf_counter()
    from roialign_suite import impl  # noqa: F401  (the import is what is timed)

    figures["import_s"] = time.perf_counter() - start
    figures.update(first_call())
    start = time.perf_counter()
    calls = {"first forward": figures["first_forward_s"], "first backward": figures["first_backward_s"]}
    every_variant(dtype_names, calls)
    figures["every_variant_s"] = time.perf_counter() - start
    figures["slowest_call"], figures["slowest_call_s"] = max(calls.items(), key=lambda item: item[1])
    figures["dtypes"] = list(dtype_names)
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:] or DTYPE_NAMES)
