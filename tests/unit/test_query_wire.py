"""The query wire format (engine/query_wire.py): what a client writes a worker reads, and
the answers are the same bytes as before the format had one module, so clients and
workers of either version understand each other during a rolling upgrade."""

from __future__ import annotations

import msgpack
import pytest

from engine.query_wire import (
    QueryAnswer,
    QueryRequest,
    QueryStatus,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
)


def _as_read(fields: dict[str, str | bytes | int]) -> dict[bytes, bytes]:
    """A stream entry's fields as XREADGROUP returns them."""
    return {
        k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()
    }


def test_request_round_trip() -> None:
    request = QueryRequest("order-3", "get_status", b"\x90", "p:reply:r1", 5000, "r1")
    fields = encode_request(request)
    assert list(fields) == ["request_id", "workflow_id", "name", "args", "reply", "timeout_ms"]
    assert decode_request(_as_read(fields)) == request


@pytest.mark.parametrize(
    "fields",
    [
        {b"workflow_id": b"x", b"timeout_ms": b"nope", b"reply": b"r"},
        {b"workflow_id": b"x", b"timeout_ms": b"60000"},
        {b"workflow_id": b"x", b"timeout_ms": b"60000", b"reply": b"\xff"},
    ],
)
def test_requests_nobody_can_be_answered_for_are_none(fields: dict[bytes, bytes]) -> None:
    assert decode_request(fields) is None


def test_missing_fields_stay_empty_so_the_answer_says_what_is_wrong() -> None:
    request = decode_request({b"reply": b"r", b"timeout_ms": b"10"})
    assert request == QueryRequest("", "", b"", "r", 10)


def test_expiry_counts_from_the_entry_id_on_the_server_clock() -> None:
    request = QueryRequest("w", "q", b"", "r", 5000)
    assert not request.expired("1000-0", 6000)
    assert request.expired("1000-0", 6001)


@pytest.mark.parametrize(
    "answer, body",
    [
        (QueryAnswer(QueryStatus.OK, payload=b"\xa1x"), {"status": "ok", "payload": b"\xa1x"}),
        (
            QueryAnswer(QueryStatus.UNKNOWN_QUERY, known=("a", "b")),
            {"status": "unknown_query", "known": ["a", "b"]},
        ),
        (QueryAnswer(QueryStatus.NOT_FOUND), {"status": "not_found"}),
        (QueryAnswer(QueryStatus.FAILED, message="boom"), {"status": "failed", "message": "boom"}),
    ],
)
def test_answers_keep_their_bytes(answer: QueryAnswer, body: dict[str, object]) -> None:
    data = encode_answer(answer)
    assert data == msgpack.packb(body, use_bin_type=True)
    assert decode_answer(data) == answer


def test_an_answer_that_makes_no_sense_is_a_failure() -> None:
    for body in ({"status": "weird"}, {}, [1, 2]):
        answer = decode_answer(msgpack.packb(body, use_bin_type=True))
        assert answer.status is QueryStatus.FAILED
        assert answer.message in ("query failed", "malformed query answer")
