"""torchvision 0.29.1 CPU roi_align on float16: a box wider than 65504 feature pixels kills the process.

roi_width = x2 * scale - x1 * scale is computed in float16 and overflows to inf; the sample
coordinates become inf/NaN and the tap index reads outside the map (SIGSEGV). The definition
gives 0: no sample of this 1x1 bin lands inside the 33x34 map. float32 input gives 0.
Expected: prints 0 for float32, then 0 for float16. Got: the float16 call dies with SIGSEGV.
"""
import torch
import torchvision

boxes = torch.tensor([[0, -33984.0, -32992.0, 33984.0, 32992.0]])
x = torch.randn(1, 1, 33, 34)
print("float32:", torchvision.ops.roi_align(x, boxes, 1, 1.0, 2, False).item())  # 0.0
print("float16 width:", (boxes[0, 3].half() - boxes[0, 1].half()).item())  # inf
print("float16:", torchvision.ops.roi_align(x.half(), boxes.half(), 1, 1.0, 2, False).item())  # SIGSEGV
