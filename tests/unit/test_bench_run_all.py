"""`python -m bench.run_all --smoke` has a small size for every benchmark it runs."""

from __future__ import annotations

from bench.run_all import BENCHMARKS, SMOKE


def test_every_benchmark_has_a_smoke_size_and_every_smoke_size_a_benchmark() -> None:
    assert sorted(SMOKE) == sorted(BENCHMARKS)
