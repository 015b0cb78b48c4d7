"""The RoIAlign property suite: Hypothesis properties that any RoIAlign must keep.

Library modules (test modules import only these and ``roialign_suite.implementations``,
the records of the implementations under test):

- ``strategies``: composable Hypothesis strategies and the readable ``RoIAlignCase``.
- ``tolerances``: error bounds derived from float rounding, and the
  "near a discontinuity" test for kernels that compute coordinates in float32.
- ``checks``: the checks the properties are made of (forward/backward vs the
  reference, adjoint identity, ...) and ``case_for``.
- ``discrepancy``: how a check reports ``error / bound`` to Hypothesis's targeted search.
- ``replay``: the corpus (``corpus/``, pinned JSON cases) and its replay.
- ``profiles``: the ``ci`` / ``dev`` / ``thorough`` Hypothesis profiles.
- ``contract``: the operator contract any kernel keeps (``test_operator_contract.py``);
  ``isolation`` and ``findings``: third-party kernels' risky calls in a child
  process, and a crash written to the corpus as a finding.
- ``session``: the plugin's share for the properties (parametrisation, header).
- ``verify``: the main job's agreement table; ``fuzz/``: campaigns; ``mutation/``: the self-check.

Tests: ``test_*.py``. Point them at any implementation with
``roialign-suite check --target MODULE:ATTR`` (options: ``roialign_suite/pytest_plugin/``).
"""
