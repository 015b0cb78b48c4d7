"""The implementations the suite verifies and times: one :class:`~.records.Implementation` record each.

- ``records``: the record (:class:`Implementation`), documented divergences
  (:class:`Divergence`) and those several kernels share, where a kernel rounds (:class:`Arithmetic`).
- ``registry``: the built-ins (``builtin``, ``by_name``), a user's target
  (``target``: ``MODULE:ATTR``), ``resolve`` by name.
- ``calling``: a ``roi_align`` on a device, CPU tensors in and out; an operator's arguments.
- one adapter module per kernel family, each with its adapters and ``record()``
  or ``records()``: ``numba`` (ours), ``reference`` (the float64 definition's
  record; the oracle is ``roialign_suite.reference``), ``torchvision`` (CPU,
  CUDA, pure-PyTorch, the MultiScaleRoIAlign pooler), ``onnx_runtimes``
  (ONNX Runtime, OpenVINO).

Adding a kernel: an adapter module here, and its name in ``registry.BUILTIN_MODULES``.
Nothing here imports Hypothesis or pytest.
"""
