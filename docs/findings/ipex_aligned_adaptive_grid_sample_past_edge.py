"""intel-extension-for-pytorch 2.8: aligned, adaptive-grid RoIAlign differs from torchvision's CPU kernel.

float64 map [1, 1, 1, 3], box (1.6818..., 0.3636..., 3.1363..., 1.8181...), scale 1.375, output 1x1,
sampling_ratio 0, aligned=True. The RoI is x in [1.8125, 3.8125], y in [0, 2]: grid 2x2; only the
sample (y, x) = (0.5, 2.3125) lies inside [-1, H] x [-1, W] and it clamps to pixel (0, 2), so the
definition gives x[2] / 4. torchvision's own kernel (run under inference_mode, where IPEX's
AutogradCPU registration is skipped) gives that; IPEX gives x[2] / 3.
Run: python ipex_aligned_adaptive_grid_sample_past_edge.py
"""
import intel_extension_for_pytorch  # noqa: F401
import torch
import torchvision

x = torch.tensor([[[[0.3, -0.8, -2.1787893821]]]], dtype=torch.float64)
box = torch.tensor([[0, 1.6818181818181819, 0.36363636363636365, 3.1363636363636367, 1.8181818181818181]],
                   dtype=torch.float64)
print("expected:", x[0, 0, 0, 2].item() / 4)
print("got:     ", torchvision.ops.roi_align(x, box, 1, 1.375, 0, True).item())
with torch.inference_mode():
    print("torchvision's own kernel:", torch.ops.torchvision.roi_align(x, box, 1.375, 1, 1, 0, True).item())
