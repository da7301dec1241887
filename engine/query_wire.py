"""The query wire format, one home for both sides of it.

A client adds a request to its task queue's query stream (`Keys.queries`, consumer group
of the workers) and waits on the request's reply list (`Keys.query_reply`); a worker
answers with one MessagePack map pushed on that list. Queries write no history: this is
all there is to them on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack


class QueryStatus(StrEnum):
    OK = "ok"
    #: The workflow has no handler of that name (the answer lists the ones it has).
    UNKNOWN_QUERY = "unknown_query"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True)
class QueryRequest:
    workflow_id: str
    name: str
    #: The arguments, encoded by the client's payload codec.
    args: bytes
    #: The list the answer goes to.
    reply: str
    #: How long the client waits, counted from the request's stream entry id (the time
    #: the server added it): the server's clock, whatever the worker's clock says.
    timeout_ms: int
    request_id: str = ""

    def expired(self, entry_id: str, now_ms: int) -> bool:
        """True once the client has given up (now_ms on the server's clock)."""
        return int(entry_id.split("-")[0]) + self.timeout_ms < now_ms


def encode_request(request: QueryRequest) -> dict[str, str | bytes | int]:
    """The request's stream entry fields."""
    return {
        "request_id": request.request_id,
        "workflow_id": request.workflow_id,
        "name": request.name,
        "args": request.args,
        "reply": request.reply,
        "timeout_ms": request.timeout_ms,
    }


def decode_request(fields: dict[bytes, bytes]) -> QueryRequest | None:
    """The request of a stream entry, or None when nobody could be answered (no reply
    list or no usable timeout: the entry is dropped). Other fields that are missing
    stay empty, so the answer says what is wrong (not found, unknown query, ...)."""
    reply = fields.get(b"reply")
    timeout_ms = fields.get(b"timeout_ms", b"")
    if reply is None or not timeout_ms.isdigit():
        return None
    try:
        reply_key = reply.decode()
    except UnicodeDecodeError:
        return None
    return QueryRequest(
        workflow_id=fields.get(b"workflow_id", b"").decode(errors="replace"),
        name=fields.get(b"name", b"").decode(errors="replace"),
        args=bytes(fields.get(b"args", b"")),
        reply=reply_key,
        timeout_ms=int(timeout_ms),
        request_id=fields.get(b"request_id", b"").decode(errors="replace"),
    )


@dataclass(frozen=True)
class QueryAnswer:
    status: QueryStatus
    #: The query's value, encoded by the payload codec (OK).
    payload: bytes = b""
    #: The workflow's query names (UNKNOWN_QUERY).
    known: tuple[str, ...] = ()
    #: What went wrong (FAILED).
    message: str = "query failed"


def encode_answer(answer: QueryAnswer) -> bytes:
    body: dict[str, Any] = {"status": answer.status.value}
    if answer.status is QueryStatus.OK:
        body["payload"] = answer.payload
    elif answer.status is QueryStatus.UNKNOWN_QUERY:
        body["known"] = list(answer.known)
    elif answer.status is QueryStatus.FAILED:
        body["message"] = answer.message
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def decode_answer(data: bytes) -> QueryAnswer:
    """An answer from the reply list; one that makes no sense reads as FAILED."""
    body = msgpack.unpackb(data, raw=False)
    if not isinstance(body, dict):
        return QueryAnswer(QueryStatus.FAILED, message="malformed query answer")
    try:
        status = QueryStatus(str(body.get("status")))
    except ValueError:
        status = QueryStatus.FAILED
    return QueryAnswer(
        status,
        payload=body.get("payload", b""),
        known=tuple(body.get("known", ())),
        message=body.get("message", "query failed"),
    )
