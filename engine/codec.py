"""Payload codec: user values <-> bytes. MessagePack on the wire, never pickle."""

from __future__ import annotations

from typing import Any, Protocol

import msgpack

from engine.errors import CodecKeyError, PayloadError

DEFAULT_PAYLOAD_LIMIT = 2 * 1024 * 1024
#: First byte of every codec chain header (engine.codec_chain): the one byte value
#: MessagePack never uses, so chained and plain payloads cannot be confused.
CHAIN_HEADER = b"\xc1"


class PayloadCodec(Protocol):
    """Turns a Python value into bytes and back. Chains (compression, encryption) wrap it."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class MsgpackCodec:
    """The default codec: MessagePack, with a size limit on every encoded payload."""

    def __init__(self, limit: int = DEFAULT_PAYLOAD_LIMIT) -> None:
        self.limit = limit

    def encode(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, use_bin_type=True, datetime=False)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PayloadError(
                f"value of type {type(value).__name__} cannot be encoded as MessagePack: {exc}"
            ) from None
        if len(data) > self.limit:
            raise PayloadError(
                f"payload of {len(data)} bytes is over the limit of {self.limit} bytes"
            )
        return data

    def decode(self, data: bytes) -> Any:
        if data[:1] == CHAIN_HEADER:
            raise CodecKeyError(
                "payload is compressed or encrypted: decode it with the codec chain that "
                "wrote it (REDURABLE_ENCRYPTION_KEYS / REDURABLE_COMPRESSION, docs/security.md)"
            )
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise PayloadError(f"payload is not valid MessagePack: {exc}") from None
