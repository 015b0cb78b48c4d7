"""torchvision's pure-PyTorch RoIAlign (``torchvision.ops.roi_align._roi_align``) accepts an integer
feature map and returns an integer output computed with truncated weights; torchvision's C++ kernel
(``torchvision.ops.roi_align``) refuses the same call. RoIAlign is defined on real values only.

Found by roialign-suite (properties/test_operator_contract.py::test_integer_input_is_refused).
Run: python docs/findings/torchvision_python_integer_input_accepted.py
"""
import torch
import torchvision
import inspect
import sys

# torch.compile's hook around it (compile_hook) is stripped: call the eager function, as torchvision's
# deterministic CUDA path does.
_roi_align = inspect.unwrap(sys.modules["torchvision.ops.roi_align"]._roi_align)

features = torch.arange(16, dtype=torch.int64).reshape(1, 1, 4, 4)
boxes = torch.tensor([[0, 0.3, 0.3, 2.7, 2.7]])
print("torchvision", torchvision.__version__)
try:
    torchvision.ops.roi_align(features, boxes, output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=False)
    print("C++ kernel: accepted")
except RuntimeError as error:
    print("C++ kernel refuses:", str(error).splitlines()[0])
out = _roi_align(features, boxes, 1.0, 2, 2, 2, False)
exact = torchvision.ops.roi_align(features.double(), boxes.double(), 2, 1.0, 2, False)
print("_roi_align:", out.dtype, out.flatten().tolist(), "| float64:", [round(v, 3) for v in exact.flatten().tolist()])
assert out.dtype == torch.int64, "fixed: _roi_align no longer returns an integer output"
