"""Durability mode specs and the check of WAITAOF / WAIT replies."""

from __future__ import annotations

import pytest

from engine.durability import Durability
from engine.errors import DurabilityError, InvalidArgumentError


def test_specs_parse_to_the_wait_they_send() -> None:
    assert Durability.parse(None) is None
    assert Durability.parse("none") is None
    assert Durability.parse("fsync", timeout_ms=700).command() == ("WAITAOF", 1, 0, 700)  # type: ignore[union-attr]
    assert Durability.parse("replicas:2").command() == ("WAIT", 2, 5000)  # type: ignore[union-attr]
    both = Durability.parse("FSYNC+replicas:1")
    assert both is not None and both.command() == ("WAITAOF", 1, 1, 5000)
    assert str(both) == "fsync+replicas:1"
    same = Durability(local_fsync=True)
    assert Durability.parse(same) is same


@pytest.mark.parametrize("spec", ["always", "replicas:", "replicas:0", "fsync+2", "wait 1"])
def test_bad_specs_are_clear_errors(spec: str) -> None:
    with pytest.raises(InvalidArgumentError, match="durability"):
        Durability.parse(spec)


def test_a_short_wait_is_a_durability_error() -> None:
    fsync = Durability(local_fsync=True, timeout_ms=10)
    fsync.check([1, 0])
    with pytest.raises(DurabilityError, match="local fsync 0/1"):
        fsync.check([0, 0])
    replicas = Durability(replicas=2)
    replicas.check(3)
    with pytest.raises(DurabilityError, match="replicas 1/2"):
        replicas.check(1)
    with pytest.raises(DurabilityError, match="could not be confirmed"):
        replicas.check(RuntimeError("connection lost"))


def test_refusals_at_connect_are_explained() -> None:
    fsync = Durability(local_fsync=True)
    assert "Redis 7.2+" in fsync.unsupported_reason("ERR unknown command 'WAITAOF'")
    assert "appendonly yes" in fsync.unsupported_reason(
        "ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled."
    )


@pytest.mark.parametrize("timeout_ms", [0, -1])
def test_a_wait_without_timeout_is_refused(timeout_ms: int) -> None:
    """WAIT/WAITAOF with a timeout of 0 block for ever: a replica that falls behind would
    hang every transition (a worker that still beats, so nobody claims its tasks)."""
    with pytest.raises(InvalidArgumentError, match="timeout"):
        Durability(replicas=1, timeout_ms=timeout_ms)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        Durability.parse("fsync", timeout_ms=timeout_ms)
