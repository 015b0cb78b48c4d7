"""intel-extension-for-pytorch 2.8: aligned RoIAlign with an adaptive grid raises on a box inverted
along one axis only.

Box (4, 1, 1, 4) aligned: roi_w = -3, roi_h = 3, output 2x2, adaptive grid: grid_w = ceil(-1.5) = -1,
grid_h = 2. Expected (the definition; impl.roi_align; ONNX's reference evaluator): no samples, 0.
Got: "cannot create std::vector larger than max_size()" (the sample buffer is sized with the
negative product; torchvision's own CPU kernel raises the same way).
Run: python ipex_negative_sample_grid_refused.py
"""
import intel_extension_for_pytorch  # noqa: F401
import torch
import torchvision

print("expected:", [0.0] * 4)
try:
    out = torchvision.ops.roi_align(torch.arange(25.0).reshape(1, 1, 5, 5), torch.tensor([[0, 4.0, 1.0, 1.0, 4.0]]),
                                    2, 1.0, 0, True)
    print("got:", out.flatten().tolist())
except Exception as error:
    print(f"got: {type(error).__name__}: {error}")
