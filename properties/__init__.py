"""The RoIAlign property suite: Hypothesis properties that any RoIAlign must keep.

- ``strategies``: composable Hypothesis strategies and the readable ``RoIAlignCase``.
- ``tolerances``: error bounds derived from float rounding, and the
  "near a discontinuity" test for kernels that compute coordinates in float32.
- ``profiles``: the ``ci`` / ``dev`` / ``thorough`` Hypothesis profiles.
- ``corpus/``: pinned replay cases (JSON), replayed by ``test_corpus.py``.
- ``contract``: the operator contract any kernel keeps (``test_operator_contract.py``);
  ``isolation`` and ``findings``: third-party kernels' risky calls in a child
  process, and a crash written to the corpus as a finding.

Point it at any implementation with ``pytest properties --roi-align=MODULE:ATTR``
(see ``conftest.py``).
"""
