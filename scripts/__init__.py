"""Runnable project scripts (benchmarks, chaos tests, dev helpers)."""
