"""Chaos and fault scenarios (issue 5): each runs full-size from the runner
(`python -m scripts.chaos run --all`) and bounded from tests/chaos/ in CI, and each ends
with the shared checker in scripts/chaos/checker.py."""
