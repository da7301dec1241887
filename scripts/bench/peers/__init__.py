"""Benchmark drivers for peer systems. Each runs in the peer's own venv under
.bench-venv/ and imports nothing from the project (only `common.py` beside it)."""
