"""Throughput benchmarks, the CI regression gate and the benchmark report.

- ``workloads``: the named workloads (box head, mask head, C4 head, sweeps,
  feature extractor) and their inputs, built once outside the timed region.
- ``runners``: the zero-argument call that is timed, per workload and implementation.
- ``bandwidth``: the bytes-moved model and the machine's measured copy bandwidth.
- ``figures``: results (pytest-benchmark JSON) -> summary rows and speedups.
- ``gate``: ``roialign-suite gate``: fail CI when a kernel regresses.
- ``report``: ``roialign-suite report``: Markdown, JSON and PNG plots.

Run with ``python -m pytest benchmarks`` (see ``benchmarks/README.md``).
"""
