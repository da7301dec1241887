"""Example workflows that ship with redurable (copy them as a starting point)."""
