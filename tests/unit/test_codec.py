"""The payload codec: MessagePack, a size limit, never pickle."""

from __future__ import annotations

import datetime
import pickle
from typing import Any

import msgpack
import pytest

from engine.codec import DEFAULT_PAYLOAD_LIMIT, MsgpackCodec, PayloadCodec
from engine.errors import InvalidArgumentError, PayloadError

codec = MsgpackCodec()


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "",
        "ünïcödé ✓",
        b"\x00\xff",
        [],
        [1, "two", [3.0, None]],
        {"a": {"b": [1, 2]}},
        {1: "int keys", 2: "work"},
    ],
)
def test_round_trip(value: Any) -> None:
    assert codec.decode(codec.encode(value)) == value


def test_tuples_become_lists() -> None:
    assert codec.decode(codec.encode((1, (2, 3)))) == [1, [2, 3]]


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, 2**64, datetime.datetime(2024, 1, 1), pickle, lambda: None],
    ids=["object", "set", "bigint", "datetime", "module", "lambda"],
)
def test_unencodable_values(value: Any) -> None:
    with pytest.raises(PayloadError, match="cannot be encoded as MessagePack"):
        codec.encode(value)


def test_size_limit_boundary() -> None:
    small = MsgpackCodec(limit=100)
    at_limit = "x" * (100 - 2)  # str8 header: 2 bytes
    assert len(small.encode(at_limit)) == 100
    with pytest.raises(PayloadError, match="payload of 101 bytes is over the limit of 100"):
        small.encode(at_limit + "x")
    assert DEFAULT_PAYLOAD_LIMIT == 2 * 1024 * 1024
    with pytest.raises(PayloadError):
        codec.encode(b"x" * DEFAULT_PAYLOAD_LIMIT)


@pytest.mark.parametrize(
    "data",
    [b"\x92\x01", b"\x01\x02", pickle.dumps({"a": 1})],
    ids=["truncated", "extra-data", "pickle"],
)
def test_undecodable_payloads(data: bytes) -> None:
    with pytest.raises(PayloadError, match="not valid MessagePack"):
        codec.decode(data)


def test_ext_types_are_not_executed() -> None:
    """An extension type comes back as inert data: nothing is ever unpickled."""
    data = msgpack.packb(msgpack.ExtType(1, pickle.dumps(print)))
    value = codec.decode(data)
    assert isinstance(value, msgpack.ExtType)


def test_payload_error_is_invalid_argument() -> None:
    assert issubclass(PayloadError, InvalidArgumentError)
    assert issubclass(PayloadError, ValueError)


def test_codec_protocol() -> None:
    class Upper:
        def encode(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes) -> Any:
            return data.decode()

    chosen: PayloadCodec = Upper()
    assert chosen.decode(chosen.encode("a")) == "A"
    assert isinstance(codec, MsgpackCodec)
