"""Torch tensors <-> the numpy arrays the Numba kernels take (``impl/kernels.py``).

The kernels read and write each dtype in its own storage, without a
conversion copy of the whole map:

============  ===============  =====================
torch dtype   kernel array     sums (backward)
============  ===============  =====================
float64       float64          float64
float32       float32          float32
float16       int16 (bits)     float32
bfloat16      uint16 (bits)    float32
============  ===============  =====================

Numba has no float16 on the CPU and numpy no bfloat16, so the halves reach
the kernels as 16-bit integer views of their bits, and the view's dtype is
the storage code: int16 holds float16, uint16 bfloat16. The kernels
specialise on it when compiled and convert in registers as they read and
write (``kernels._convert``). The forward's sums are float64 for float32
and float64 maps, float32 for the halves (``kernels._sum_buffer``); the
backward sums in the dtype of the last column.
"""
from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch
from torch import Tensor

from roialign_suite.impl import kernels


@dataclass(frozen=True)
class Storage:
    """How one torch dtype is handed to the kernels."""

    array: np.dtype  # the kernel array's dtype (for the halves, a view of the bits)
    bits: torch.dtype  # the torch dtype of the same size whose ``.numpy()`` gives ``array``
    sums: np.dtype  # the dtype the backward sums in


STORAGE: Dict[torch.dtype, Storage] = {
    torch.float64: Storage(np.dtype(np.float64), torch.float64, np.dtype(np.float64)),
    torch.float32: Storage(np.dtype(np.float32), torch.float32, np.dtype(np.float32)),
    torch.float16: Storage(np.dtype(np.int16), torch.int16, np.dtype(np.float32)),
    torch.bfloat16: Storage(np.dtype(np.uint16), torch.uint16, np.dtype(np.float32)),
}


def storage(dtype: torch.dtype) -> Storage:
    """The :class:`Storage` of ``dtype``; ``TypeError`` for a dtype the kernels do not take."""
    try:
        return STORAGE[dtype]
    except KeyError:
        raise TypeError(f"the kernels take {', '.join(str(d) for d in STORAGE)}; got {dtype}") from None


def kernel_array(t: Tensor) -> np.ndarray:
    """The CPU tensor ``t`` as its kernel array: the same memory and strides, no copy."""
    return t.detach().view(storage(t.dtype).bits).numpy()


def new_tensor(shape, dtype: torch.dtype, zeros: bool = False) -> Tensor:
    """A fresh C-contiguous CPU tensor from numpy's allocator (allocated as its kernel array's dtype),
    its pages already faulted in.

    numpy asks the kernel for transparent huge pages on large arrays, which
    halves the page-fault cost of the first write where the kernel has them
    (a 124 MB gradient: 57 ms for ``torch.empty`` + fill against 22 ms here).
    The pages are faulted in here, one write per page from this thread,
    because faults taken inside a parallel kernel cost several times more: on
    the P2 box head's 51 MB output, 2.4 ms here against 11-13 ms more kernel
    time (``benchmarks/README.md``, "Faulting the output in first").
    """
    array = (np.zeros if zeros else np.empty)(shape, storage(dtype).array)
    if array.nbytes >= _PRE_FAULT_BYTES:
        array.reshape(-1).view(np.uint8)[::PAGE_BYTES] = 0  # zero bytes: a zeroed array stays zeros
    return torch.from_numpy(array).view(dtype)


PAGE_BYTES = mmap.PAGESIZE
# Arrays at least this large are faulted in by new_tensor: smaller ones come
# from memory the allocator has already touched (glibc maps fresh pages only
# for blocks past its mmap threshold, at most 32 MiB).
_PRE_FAULT_BYTES = 1 << 20


class Scratch(threading.local):
    """Per-thread NHWC buffers, reused across calls.

    A fresh 100 MB array costs more in page faults than the transposition
    that fills it, so the layout conversions (each level's map in the
    forward, the output gradient in the backward) reuse buffers. A buffer is
    keyed by its role (``slot``: a level index or a name) as well as its
    shape, so two levels of equal shape never share one; the last ``KEEP``
    are kept (a pyramid's maps and the output gradient).
    """

    KEEP = 2 * kernels.MAX_LEVELS

    def __init__(self):
        self.buffers: "OrderedDict[tuple, np.ndarray]" = OrderedDict()

    def get(self, slot, shape, dtype) -> np.ndarray:
        key = (slot, tuple(shape), np.dtype(dtype).str)
        buffer = self.buffers.pop(key, None)
        if buffer is None:
            buffer = np.empty(shape, dtype=dtype)
        self.buffers[key] = buffer
        while len(self.buffers) > self.KEEP:
            self.buffers.popitem(last=False)
        return buffer


scratch = Scratch()


def nhwc(t: Tensor, slot, sums: bool = False) -> np.ndarray:
    """``[N, C, H, W]`` tensor -> C-contiguous ``[N, H, W, C]`` kernel array.

    In ``t``'s own storage (no copy if channels_last), or with ``sums`` in
    its sum dtype (decoded from the halves), copied to a scratch buffer.
    """
    layout = storage(t.dtype)
    source = kernel_array(t)
    if not sums and t.permute(0, 2, 3, 1).is_contiguous():
        return source.transpose(0, 2, 3, 1)
    n, c, h, w = t.shape
    out = scratch.get(slot, (n, h, w, c), layout.sums if sums else layout.array)
    kernels.nchw_to_nhwc(source, out)
    return out
