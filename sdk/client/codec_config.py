"""The payload codec chain configured by environment variables, so the CLI, the web UI
and `redurable worker` decode payloads the way the application's own workers encode
them (docs/security.md).

REDURABLE_ENCRYPTION_KEYS        `keyid:base64key,...`; the first key encrypts, all decrypt
REDURABLE_COMPRESSION            `zlib`, or `none` (the default)
REDURABLE_COMPRESSION_THRESHOLD  payloads shorter than this many bytes stay uncompressed
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from engine.codec import MsgpackCodec, PayloadCodec
from engine.codec_chain import (
    DEFAULT_COMPRESSION_THRESHOLD,
    AesGcmCodec,
    CompressionCodec,
    check_key_id,
)
from engine.errors import InvalidArgumentError

KEYS_VAR = "REDURABLE_ENCRYPTION_KEYS"
COMPRESSION_VAR = "REDURABLE_COMPRESSION"
THRESHOLD_VAR = "REDURABLE_COMPRESSION_THRESHOLD"


def parse_keys(text: str) -> dict[str, bytes]:
    """`keyid:base64key,...` in order (the first one is the active key). Errors never
    echo a key's value."""
    keys: dict[str, bytes] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep:
            raise InvalidArgumentError(f"{KEYS_VAR}: each entry is keyid:base64key")
        key_id = check_key_id(key_id.strip())
        if key_id in keys:
            raise InvalidArgumentError(f"{KEYS_VAR}: key id {key_id!r} appears twice")
        try:
            keys[key_id] = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"{KEYS_VAR}: key {key_id!r} is not valid base64") from None
    return keys


def codec_from_env(environ: Mapping[str, str] | None = None) -> PayloadCodec:
    """The codec chain the environment asks for: MessagePack, then compression, then
    encryption. With neither variable set, plain MessagePack."""
    env = os.environ if environ is None else environ
    codec: PayloadCodec = MsgpackCodec()
    compression = env.get(COMPRESSION_VAR, "").strip().lower()
    if compression == "zlib":
        threshold_text = env.get(THRESHOLD_VAR, "").strip()
        try:
            threshold = int(threshold_text) if threshold_text else DEFAULT_COMPRESSION_THRESHOLD
        except ValueError:
            raise InvalidArgumentError(
                f"{THRESHOLD_VAR} must be a number of bytes, not {threshold_text!r}"
            ) from None
        codec = CompressionCodec(codec, threshold=threshold)
    elif compression not in ("", "none"):
        raise InvalidArgumentError(f"{COMPRESSION_VAR} must be zlib or none, not {compression!r}")
    keys = parse_keys(env.get(KEYS_VAR, ""))
    if keys:
        codec = AesGcmCodec(codec, keys=keys, active=next(iter(keys)))
    return codec
