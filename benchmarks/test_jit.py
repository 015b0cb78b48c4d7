"""Cold and warm-cache first call of our kernels, each in a fresh process.

Reported apart from the throughput workloads (their JIT is warmed up before
timing). The pytest-benchmark time is the whole child process (interpreter
start, torch import); ``extra_info`` holds the child's own split.
"""
from __future__ import annotations

from roialign_suite.benchmarks import figures, jit


def _first_call_benchmark(benchmark, roialign_record, cache_dir, dtypes, cache: str, name: str) -> None:
    benchmark.group = "jit-first-call"
    found = benchmark.pedantic(jit.measure, args=(cache_dir, dtypes), rounds=1, iterations=1)
    benchmark.extra_info.update(kind=figures.JIT, workload=name, cache=cache, **found)
    roialign_record(benchmark)


def test_cold_first_call(benchmark, roialign_record, roialign_jit_dtypes, tmp_path):
    _first_call_benchmark(benchmark, roialign_record, tmp_path, roialign_jit_dtypes, "empty", "jit-cold")


def test_warm_cache_first_call(benchmark, roialign_record, roialign_jit_dtypes, tmp_path):
    jit.measure(tmp_path, roialign_jit_dtypes)  # populates the cache
    _first_call_benchmark(benchmark, roialign_record, tmp_path, roialign_jit_dtypes, "populated", "jit-warm-cache")
