"""First-call cost of our kernels: ``import impl`` and the Numba JIT compile.

``python -m roialign_suite.benchmarks.jit`` runs in a child process and prints JSON
``{"torch_import_s", "import_s", "first_forward_s", "first_backward_s"}``
for one tiny forward+backward, then ``other_variants_s`` for every other
kernel variant the suite runs: ``import_s`` is ``import impl`` once torch is
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
from typing import Dict

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


def other_variants() -> float:
    """Seconds to run, after :func:`first_call`, every other kernel variant the suite uses.

    float64, a channels_last input (its NHWC view has C-contiguous strides),
    a strided input and a four-level pooler, each forward and backward: with
    an empty cache that is the rest of the suite's compile.
    """
    import torch

    from roialign_suite import impl

    start = time.perf_counter()
    boxes = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]])
    inputs = [
        torch.rand(1, 4, 8, 8, dtype=torch.float64),
        torch.rand(1, 4, 8, 8).to(memory_format=torch.channels_last),
        torch.rand(1, 4, 8, 16)[..., ::2],
    ]
    for x in inputs:
        x.requires_grad_()
        out = impl.roi_align(x, boxes.to(x.dtype), 2, 1.0, 2, False)
        torch.autograd.grad(out.sum(), x)
    for dtype in (torch.float32, torch.float64):
        pyramid = [torch.rand(1, 4, 64 // 2**i, 64 // 2**i, dtype=dtype, requires_grad=True) for i in range(4)]
        pooled = impl.fpn_box_head_pooler()(pyramid, [torch.tensor([[0.0, 0.0, 60.0, 60.0]], dtype=dtype)])
        torch.autograd.grad(pooled.sum(), pyramid)
    return time.perf_counter() - start


def measure(cache_dir: Path) -> Dict[str, float]:
    """Run :func:`main` in a fresh interpreter with Numba's cache in ``cache_dir``."""
    env = paths.child_environment(dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DISABLE_JIT="0"))
    done = subprocess.run(
        [sys.executable, "-m", "roialign_suite.benchmarks.jit"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"roialign_suite.benchmarks.jit child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    start = time.perf_counter()
    import torch  # noqa: F401  (timed apart: every caller of a torch op has paid it already)

    figures = {"torch_import_s": time.perf_counter() - start}
    start = time.perf_counter()
    from roialign_suite import impl  # noqa: F401  (the import is what is timed)

    figures["import_s"] = time.perf_counter() - start
    figures.update(first_call())
    figures["other_variants_s"] = other_variants()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
