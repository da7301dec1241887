"""Task tokens: opaque bytes that name one activity attempt, and refuse anything else."""

from __future__ import annotations

import msgpack
import pytest

from engine.errors import InvalidArgumentError
from engine.task_token import ActivityRef, decode_task_token


def test_round_trip() -> None:
    ref = ActivityRef("order-3", "run-1", 2, 5)
    token = ref.encode()
    assert isinstance(token, bytes)
    assert decode_task_token(token) == ref


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\xc1",  # never used by msgpack
        b"x" * 5000,
        msgpack.packb([2, "w", "r", 1, 1]),  # another version
        msgpack.packb([1, "w", "r", 0, 1]),  # activity ids start at 1
        msgpack.packb([1, "w", "r", 1]),
        msgpack.packb({"workflow_id": "w"}),
        msgpack.packb([1, "bad{id}", "r", 1, 1]),  # ids are validated as everywhere
    ],
)
def test_bad_tokens_are_a_clear_error(token: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        decode_task_token(token)


def test_not_bytes() -> None:
    with pytest.raises(InvalidArgumentError):
        decode_task_token("text")  # type: ignore[arg-type]


def test_a_ref_for_the_current_attempt_has_no_token() -> None:
    with pytest.raises(InvalidArgumentError):
        ActivityRef("w", "r", 1).encode()
