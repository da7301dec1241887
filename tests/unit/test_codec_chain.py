"""The codec chain: compression, AES-GCM encryption with key rotation, and the
environment configuration that the CLI and `redurable worker` read."""

from __future__ import annotations

import base64
import os
import zlib
from typing import Any

import pytest

from engine.codec import MsgpackCodec
from engine.codec_chain import AESGCM_MAGIC, ZLIB_MAGIC, AesGcmCodec, CompressionCodec
from engine.errors import InvalidArgumentError, PayloadError
from sdk.client.codec_config import codec_from_env

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
VALUE = {"card": "4111-1111-1111-1111", "items": ["pizza"] * 50, "n": 3}


def encrypted(active: str = "k1", **extra: bytes) -> AesGcmCodec:
    keys = {"k1": KEY1, **extra}
    return AesGcmCodec(CompressionCodec(MsgpackCodec()), keys=keys, active=active)


@pytest.mark.parametrize("value", [None, 0, "", "text ✓", b"\x00\xff", [1, [2]], VALUE])
def test_round_trip(value: Any) -> None:
    codec = encrypted()
    assert codec.decode(codec.encode(value)) == value


def test_ciphertext_hides_plaintext_and_is_fresh_each_time() -> None:
    codec = AesGcmCodec(MsgpackCodec(), keys={"k1": KEY1}, active="k1")
    one, two = codec.encode("4111-1111-1111-1111"), codec.encode("4111-1111-1111-1111")
    assert b"4111" not in one
    assert one != two  # a random nonce per payload
    assert one.startswith(AESGCM_MAGIC + b"\x02k1")


def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old = encrypted("k1")
    written_before = old.encode(VALUE)
    rotated = encrypted("k2", k2=KEY2)
    written_after = rotated.encode(VALUE)
    assert written_after.startswith(AESGCM_MAGIC + b"\x02k2")
    assert rotated.decode(written_before) == VALUE
    assert rotated.decode(written_after) == VALUE
    with pytest.raises(PayloadError, match="encrypted with key 'k2', which is not configured"):
        old.decode(written_after)


def test_same_key_id_with_another_key_fails_authentication() -> None:
    data = encrypted().encode(VALUE)
    impostor = AesGcmCodec(MsgpackCodec(), keys={"k1": KEY2}, active="k1")
    with pytest.raises(PayloadError, match=r"key 'k1'.*failed authentication"):
        impostor.decode(data)


@pytest.mark.parametrize("position", [5, 10, 20, -1])
def test_tampered_bytes_are_detected(position: int) -> None:
    codec = encrypted()
    data = bytearray(codec.encode(VALUE))
    data[position] ^= 0x01
    with pytest.raises(PayloadError):
        codec.decode(bytes(data))


def test_key_id_in_header_is_authenticated() -> None:
    """Relabelling a payload with another configured key id does not pass."""
    codec = encrypted(k2=KEY1)  # same key bytes under two ids
    data = codec.encode(VALUE)
    relabelled = data.replace(b"\x02k1", b"\x02k2", 1)
    with pytest.raises(PayloadError, match="failed authentication"):
        codec.decode(relabelled)


@pytest.mark.parametrize(
    "data, message",
    [
        (MsgpackCodec().encode("plain"), "not encrypted"),
        (AESGCM_MAGIC, "truncated"),
        (AESGCM_MAGIC + b"\x02k1" + b"short", "truncated"),
    ],
    ids=["plaintext", "no-header", "no-nonce"],
)
def test_malformed_encrypted_payloads(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        encrypted().decode(data)


@pytest.mark.parametrize(
    "keys, active, message",
    [
        ({}, "k1", "at least one key"),
        ({"k1": KEY1}, "k2", "active encryption key 'k2'"),
        ({"k1": b"short"}, "k1", "is 5 bytes; AES keys are 16, 24 or 32"),
        ({"bad id": KEY1}, "bad id", "key id 'bad id'"),
    ],
)
def test_bad_key_configuration(keys: dict[str, bytes], active: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        AesGcmCodec(MsgpackCodec(), keys=keys, active=active)


@pytest.mark.parametrize("data", [b"\xc1", ZLIB_MAGIC + b"x", AESGCM_MAGIC + b"x"])
def test_plain_codec_names_chained_payloads(data: bytes) -> None:
    """0xC1, the byte MessagePack never uses, starts every chain header."""
    with pytest.raises(PayloadError, match="compressed or encrypted: decode it with the codec"):
        MsgpackCodec().decode(data)


def test_compression_threshold() -> None:
    codec = CompressionCodec(MsgpackCodec(), threshold=100)
    small, large = "x" * 50, "x" * 500
    assert codec.encode(small) == MsgpackCodec().encode(small)
    packed = codec.encode(large)
    assert packed.startswith(ZLIB_MAGIC) and len(packed) < 100
    assert codec.decode(packed) == large
    assert codec.decode(MsgpackCodec().encode(small)) == small  # uncompressed still reads


def test_incompressible_payloads_stay_as_they_are() -> None:
    codec = CompressionCodec(MsgpackCodec(), threshold=0)
    noise = os.urandom(1000)
    assert codec.encode(noise) == MsgpackCodec().encode(noise)


def test_size_limit_still_applies_through_the_chain() -> None:
    """The limit is on the MessagePack payload, before compression shrinks it."""
    chain = AesGcmCodec(CompressionCodec(MsgpackCodec(limit=100)), keys={"k1": KEY1}, active="k1")
    assert chain.decode(chain.encode("x" * 98)) == "x" * 98
    with pytest.raises(PayloadError, match="payload of 101 bytes is over the limit of 100"):
        chain.encode("x" * 99)


def test_decompression_is_bounded() -> None:
    bomb = ZLIB_MAGIC + zlib.compress(MsgpackCodec().encode("x" * 10_000))
    with pytest.raises(PayloadError, match="expands past the limit of 1000 bytes"):
        CompressionCodec(MsgpackCodec(), limit=1000).decode(bomb)


@pytest.mark.parametrize(
    "data, message",
    [(ZLIB_MAGIC + b"not zlib", "corrupt"), (ZLIB_MAGIC + zlib.compress(b"abc")[:-3], "trunc")],
)
def test_corrupt_compressed_payloads(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        CompressionCodec(MsgpackCodec()).decode(data)


# --- configuration from the environment ---------------------------------------------


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_env_unset_is_plain_msgpack() -> None:
    assert isinstance(codec_from_env({}), MsgpackCodec)
    assert isinstance(codec_from_env({"REDURABLE_COMPRESSION": "none"}), MsgpackCodec)


def test_env_full_chain_first_key_active() -> None:
    env = {
        "REDURABLE_ENCRYPTION_KEYS": f"new:{b64(KEY2)}, old:{b64(KEY1)}",
        "REDURABLE_COMPRESSION": "zlib",
        "REDURABLE_COMPRESSION_THRESHOLD": "10",
    }
    codec = codec_from_env(env)
    assert isinstance(codec, AesGcmCodec) and codec.active == "new"
    assert isinstance(codec.inner, CompressionCodec) and codec.inner.threshold == 10
    old_payload = AesGcmCodec(MsgpackCodec(), keys={"old": KEY1}, active="old").encode("hi")
    assert codec.decode(old_payload) == "hi"
    assert codec.decode(codec.encode(VALUE)) == VALUE


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REDURABLE_ENCRYPTION_KEYS": "nocolon"}, "each entry is keyid:base64key"),
        ({"REDURABLE_ENCRYPTION_KEYS": "k1:%%%"}, "key 'k1' is not valid base64"),
        ({"REDURABLE_ENCRYPTION_KEYS": f"k1:{b64(KEY1)},k1:{b64(KEY2)}"}, "appears twice"),
        ({"REDURABLE_ENCRYPTION_KEYS": "k1:" + b64(b"short")}, "AES keys are 16, 24 or 32"),
        ({"REDURABLE_COMPRESSION": "lz4"}, "must be zlib or none, not 'lz4'"),
        (
            {"REDURABLE_COMPRESSION": "zlib", "REDURABLE_COMPRESSION_THRESHOLD": "big"},
            "must be a number of bytes",
        ),
    ],
)
def test_env_errors_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        codec_from_env(env)


def test_env_errors_never_echo_key_material() -> None:
    secret = b64(KEY1)[:-4] + "!!!!"
    with pytest.raises(InvalidArgumentError) as info:
        codec_from_env({"REDURABLE_ENCRYPTION_KEYS": f"k1:{secret}"})
    assert secret not in str(info.value)


def test_missing_cryptography_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(InvalidArgumentError, match=r"pip install 'redurable\[crypto\]'"):
        AesGcmCodec(MsgpackCodec(), keys={"k1": KEY1}, active="k1")
