"""Intel Extension for PyTorch 2.8 RoIAlign (it replaces torchvision's CPU kernel on import) sums a
bin's samples in float16 for float16 input: a bin of 570 samples of a ramp (mean 141) overflows
past 65504 to inf, where the definition gives 141, a float16 value. torchvision's own CPU kernel
does the same (0.23 in IPEX's environment, and 0.29.1 in the suite's): both print inf.

Found by roialign-suite (properties/test_metamorphic.py::test_linear_ramp_gives_the_bin_centres[ipex]);
the suite's bounds do not yet model an intermediate sum's overflow, which is why torchvision's own
overflow was not reported by its run (its draws did not reach such a bin).
Run in IPEX's environment (torch 2.8): python docs/findings/ipex_float16_sum_overflow.py
"""
import torch
import torchvision

features = (torch.arange(6 * 95, dtype=torch.float64).reshape(1, 1, 6, 95) % 95 * 3).to(torch.float16)
boxes = torch.tensor([[0, 0.0, 0.0, 94.0, 5.0]], dtype=torch.float16)
before = torchvision.ops.roi_align(features, boxes, 1, 1.0, 0, False)
import intel_extension_for_pytorch  # noqa: E402,F401  (replaces the CPU kernel)
after = torchvision.ops.roi_align(features, boxes, 1, 1.0, 0, False)
exact = torchvision.ops.roi_align(features.double(), boxes.double(), 1, 1.0, 0, False)
print("float64:", exact.item(), "| torchvision float16:", before.item(), "| IPEX float16:", after.item())
