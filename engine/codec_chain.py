"""Codecs that wrap another codec: zlib compression and AES-GCM encryption.

Each one wraps an inner `PayloadCodec` (MsgpackCodec at the bottom, which keeps its
size limit), so a chain is written inside out:

    AesGcmCodec(CompressionCodec(MsgpackCodec()), keys={"k2": key2, "k1": key1}, active="k2")

Encoded payloads carry their own small header, so a reader needs no configuration
beyond the keys: whether a payload is compressed, and which key encrypted it, are in
the bytes. Headers start with 0xC1, the one byte MessagePack never uses, so a header
can never be mistaken for a plain MessagePack payload or the other way round.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.codec import DEFAULT_PAYLOAD_LIMIT, PayloadCodec
from engine.errors import CodecKeyError, InvalidArgumentError, PayloadError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Header of a zlib-compressed payload.
ZLIB_MAGIC = b"\xc1z"
#: Header of an AES-GCM payload, version 1: then 1 byte key id length, the key id,
#: a 12-byte nonce, and the ciphertext with its 16-byte tag.
AESGCM_MAGIC = b"\xc1e1"
NONCE_SIZE = 12
KEY_SIZES = (16, 24, 32)
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_COMPRESSION_THRESHOLD = 256


class CompressionCodec:
    """zlib-compresses what `inner` encodes when it is at least `threshold` bytes long
    and compression makes it smaller. Decompression stops at `limit` bytes, so a
    small payload cannot expand into a huge one (a "zip bomb")."""

    def __init__(
        self,
        inner: PayloadCodec,
        *,
        threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
        limit: int = DEFAULT_PAYLOAD_LIMIT,
        level: int = 6,
    ) -> None:
        if threshold < 0:
            raise InvalidArgumentError("compression threshold must be 0 or more bytes")
        self.inner = inner
        self.threshold = threshold
        self.limit = limit
        self.level = level

    def encode(self, value: Any) -> bytes:
        data = self.inner.encode(value)
        if len(data) < self.threshold:
            return data
        packed = ZLIB_MAGIC + zlib.compress(data, self.level)
        return packed if len(packed) < len(data) else data

    def decode(self, data: bytes) -> Any:
        if not data.startswith(ZLIB_MAGIC):
            return self.inner.decode(data)
        inflater = zlib.decompressobj()
        try:
            plain = inflater.decompress(data[len(ZLIB_MAGIC) :], self.limit + 1)
        except zlib.error as exc:
            raise PayloadError(f"compressed payload is corrupt: {exc}") from None
        if len(plain) > self.limit:
            raise PayloadError(f"compressed payload expands past the limit of {self.limit} bytes")
        if not inflater.eof:
            raise PayloadError("compressed payload is truncated")
        return self.inner.decode(plain)


def check_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidArgumentError(
            f"encryption key id {key_id!r} must be 1-64 characters of A-Z a-z 0-9 . _ -"
        )
    return key_id


def _aesgcm_class() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise InvalidArgumentError(
            "payload encryption needs the cryptography package: pip install 'redurable[crypto]'"
        ) from None
    return AESGCM


class AesGcmCodec:
    """Encrypts what `inner` encodes with AES-GCM under the `active` key; decrypts with
    whichever key of `keys` the payload names. Rotation: add a new key and make it
    active; keep the old ones as long as histories encrypted with them are read.

    The key id and format version are authenticated with the ciphertext (GCM's
    associated data), so a payload whose bytes or header were changed fails to
    decode instead of decoding to something else."""

    def __init__(self, inner: PayloadCodec, *, keys: Mapping[str, bytes], active: str) -> None:
        if not keys:
            raise InvalidArgumentError("AES-GCM codec needs at least one key")
        if active not in keys:
            raise InvalidArgumentError(f"active encryption key {active!r} is not among the keys")
        aesgcm = _aesgcm_class()
        self.inner = inner
        self.active = active
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            check_key_id(key_id)
            if len(key) not in KEY_SIZES:
                raise InvalidArgumentError(
                    f"encryption key {key_id!r} is {len(key)} bytes; AES keys are 16, 24 or 32"
                )
            self._ciphers[key_id] = aesgcm(key)

    @staticmethod
    def _header(key_id: str) -> bytes:
        raw = key_id.encode()
        return AESGCM_MAGIC + bytes([len(raw)]) + raw

    def encode(self, value: Any) -> bytes:
        plain = self.inner.encode(value)
        header = self._header(self.active)
        # A random 96-bit nonce per payload: never reused in practice as long as one
        # key encrypts well under 2**32 payloads (docs/security.md: rotate keys).
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + self._ciphers[self.active].encrypt(nonce, plain, header)

    def decode(self, data: bytes) -> Any:
        if not data.startswith(AESGCM_MAGIC):
            # Accepting plaintext here would let anyone who can write to Redis swap an
            # encrypted payload for one of their own.
            raise PayloadError("payload is not encrypted, but this codec requires encryption")
        start = len(AESGCM_MAGIC) + 1
        if len(data) < start:
            raise PayloadError("encrypted payload is truncated")
        end = start + data[start - 1]
        key_id = data[start:end].decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(
                f"payload was encrypted with key {key_id!r}, which is not configured"
            )
        nonce = data[end : end + NONCE_SIZE]
        if len(nonce) < NONCE_SIZE:
            raise PayloadError("encrypted payload is truncated")
        from cryptography.exceptions import InvalidTag

        try:
            plain = cipher.decrypt(nonce, data[end + NONCE_SIZE :], data[:end])
        except InvalidTag:
            raise CodecKeyError(
                f"encrypted payload (key {key_id!r}) failed authentication: "
                "it was altered, or the key with that id is not the one that encrypted it"
            ) from None
        return self.inner.decode(plain)
