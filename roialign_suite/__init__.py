"""roialign-suite: a verified, benchmarked RoIAlign and the suite that verifies anyone's.

Everything installs under this one import name, so a user's own ``tests/``,
``benchmarks/`` or ``properties/`` folders never shadow ours:

- ``roialign_suite.impl``: our Numba CPU RoIAlign as ``torch.ops.roialign_suite``
  operators, level assignment, the multi-level pooler, the box-head extractors.
- ``roialign_suite.reference``: the oracles (float64 definition, each level
  dialect, the reference pooler); they import nothing from ``impl`` or ``implementations``.
- ``roialign_suite.implementations``: one record per RoIAlign under test (ours, the
  reference, torchvision, ONNX Runtime, OpenVINO, ...), its adapter, the registry.
- ``roialign_suite.properties``: the Hypothesis property suite, its isolation and fuzzing.
- ``roialign_suite.pytest_plugin``: the pytest plugin (one package, a module per job).
- ``roialign_suite.benchmarks``: throughput workloads, the ratio gate, the report.
"""
import os as _os

# In the repository the subpackages are the top-level folders beside
# this one (impl/, reference/, implementations/, properties/, benchmarks/); a wheel nests them
# inside it. Look beside it only when they are not inside.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "impl")):
    __path__.append(_os.path.dirname(_here))  # noqa: F821 (a package's __path__)

__version__ = "0.2.0"
