"""intel-extension-for-pytorch 2.8 (torch 2.8): RoIAlign on a map with H = 0 (or W = 0) crashes.

Importing IPEX replaces torchvision::roi_align's CPU kernel (AutogradCPU). Expected (the RoIAlign
definition: no pixel to sample): zeros [K, C, h, w] = [1, 1, 1, 1]. Got: SIGSEGV. The kernel
returns early only for an empty output; pre_calc_for_bilinear_interpolate clamps the sample
to row H - 1 = -1 and the sum reads it (torchvision's own CPU kernel does the same).
Run: python ipex_empty_map_segfault.py   (it crashes on purpose; exit status -11 / 139)
"""
import intel_extension_for_pytorch  # noqa: F401
import torch
import torchvision

print("expected:", [0.0])
out = torchvision.ops.roi_align(torch.zeros(1, 1, 0, 1), torch.tensor([[0, 0.0, 0.0, 1.0, 1.0]]), 1, 1.0, 2)
print("got:", out.flatten().tolist())  # never printed
