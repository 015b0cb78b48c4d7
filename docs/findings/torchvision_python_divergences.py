"""torchvision's pure-PyTorch RoIAlign (``torchvision.ops.roi_align._roi_align``, the path of
deterministic CUDA runs and of torch.compile) against torchvision's own C++ kernel, which follows
the RoIAlign definition, on three tiny inputs:

1. a sample outside [-1, H] x [-1, W] should contribute 0: _roi_align clamps it onto the border
   and counts it (a box left of a 1 x 1 map: C++ 0, _roi_align the pixel's value);
2. an adaptive grid with more samples per bin than the map has rows: _roi_align takes at most H
   of them but divides by the full grid (box [-1, 1]^2 on a 1 x 1 map of 2.0: C++ 2.0, _roi_align 0.5);
3. aligned=True, a zero-width box, adaptive grid (no samples): the output is 0 in both, but the
   backward of _roi_align's torch.where masking gives a NaN input gradient (C++: 0).

Found by roialign-suite (test_forward_matches_reference, test_largest_adaptive_grid_behaves_like_the_reference,
test_backward_matches_reference on torchvision-python). Run: python docs/findings/torchvision_python_divergences.py
"""
import inspect
import sys

import torch
import torchvision

_roi_align = inspect.unwrap(sys.modules["torchvision.ops.roi_align"]._roi_align)  # eager, not compiled


def both(features, box, output_size, spatial_scale, sampling_ratio, aligned):
    rois = torch.tensor([box], dtype=torch.float64)
    cpp = torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    python = _roi_align(features, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned)
    return cpp, python


print("torchvision", torchvision.__version__)
one_pixel = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
cpp, python = both(one_pixel, [0, -12.0, 0.0, -8.0, 4.0], (1, 1), 0.25, 2, False)
print("1. samples outside the map:", "C++", cpp.item(), "| _roi_align", python.item())
cpp, python = both(one_pixel, [0, -1.0, -1.0, 1.0, 1.0], (1, 1), 1.0, 0, False)
print("2. adaptive grid past the map's size:", "C++", cpp.item(), "| _roi_align", python.item())
features = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4).requires_grad_(True)
cpp, python = both(features, [0, 1.5, 1.0, 1.5, 3.0], (1, 1), 1.0, 0, True)
(cpp_grad,) = torch.autograd.grad(cpp.sum(), features)
(python_grad,) = torch.autograd.grad(python.sum(), features)
print("3. empty aligned adaptive grid: outputs", cpp.item(), python.item(), "| NaN in the input gradient: C++",
      bool(cpp_grad.isnan().any()), "| _roi_align", bool(python_grad.isnan().any()))
