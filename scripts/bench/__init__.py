"""The benchmark suite: `scripts/bench/run` (see docs/benchmarks.md)."""
