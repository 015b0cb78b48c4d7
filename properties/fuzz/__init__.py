"""Long fuzz campaigns over the property suite; every finding becomes a corpus case (docs/fuzzing.md).

- ``roialign-suite fuzz`` (``__main__``; ``tox -e fuzz``): the command.
- ``campaign``: worker processes running rounds of pytest until the budget ends.
- ``plugin``: the pytest plugin of one round: the ``fuzz`` Hypothesis profile,
  counting through observability, writing failures to the corpus.
- ``corpus``: a shrunk failing example -> replayable corpus entries; ``accept``.
- ``stats``: counts, their merge over workers, the progress line and summary.
- ``redis_server``: a private loopback redis-server for shared-database workers.
- ``planted``: a RoIAlign with a planted edge-case bug, for the end-to-end test.
"""
