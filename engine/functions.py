"""Loading the Redis Functions library (engine/lua/*.lua, concatenated in name order)."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis

LIBRARY_NAME = "redurable"


def library_source() -> str:
    """The library as FUNCTION LOAD takes it: one chunk, common helpers first."""
    folder = resources.files("engine").joinpath("lua")
    parts = [f"#!lua name={LIBRARY_NAME}\n"]
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".lua"):
            parts.append(f"-- ===== {entry.name} =====\n")
            parts.append(entry.read_text())
    return "\n".join(parts)


async def load_library(redis: Redis) -> None:
    """Load (or replace) the library. Idempotent: every client and worker calls it."""
    await redis.function_load(library_source(), replace=True)
