"""Workflows with the compression + AES-GCM codec chain: end to end in-process and
through the CLI (`redurable worker` and `workflow show/result` configured by the
environment), with no plaintext of inputs, results or signals anywhere in Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

import anyio
import pytest

from engine.codec import MsgpackCodec
from engine.codec_chain import AesGcmCodec, CompressionCodec
from engine.errors import PayloadError
from engine.keys import Keys
from sdk import Client
from sdk.testing import running_worker
from tests.conftest import sync_redis, unique_prefix
from tests.integration.cli_support import (  # noqa: F401 (cli: the fixture)
    ENV,
    ROOT,
    Cli,
    assert_one_line_error,
    cli,
    redurable,
    stop_worker,
)
from tests.integration.secret_workflows import SecretEcho, stamp

pytestmark = pytest.mark.anyio

CARD = "4111-1111-1111-1111"
NOTE = "leave-at-the-back-door"
#: Long and repetitive: compressed before it is encrypted.
PADDING = "confidential-padding " * 200
SECRETS = [CARD.encode(), NOTE.encode(), b"confidential-padding", b"charged"]
KEY_OLD, KEY_NEW = os.urandom(32), os.urandom(32)


def chain(*keys: tuple[str, bytes]) -> AesGcmCodec:
    return AesGcmCodec(CompressionCodec(MsgpackCodec()), keys=dict(keys), active=keys[0][0])


async def everything_stored(redis: Any, prefix: str) -> bytes:
    # Any: redis-py types replies as bytes | str, and these are bytes (no decoding).
    """Every key name and value of the namespace, concatenated."""
    parts: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        parts.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "stream":
            for _, fields in await redis.xrange(key):
                parts.extend(k + v for k, v in fields.items())
        elif kind == "hash":
            parts.extend(k + v for k, v in (await redis.hgetall(key)).items())
        elif kind == "list":
            parts.extend(await redis.lrange(key, 0, -1))
        elif kind == "zset":
            parts.extend(await redis.zrange(key, 0, -1))
        elif kind == "set":
            parts.extend(await redis.smembers(key))
        elif kind == "string":
            parts.append(await redis.get(key) or b"")
    return b"\n".join(parts)


async def test_workflow_runs_with_the_chain_and_redis_holds_no_plaintext(redis_url: str) -> None:
    prefix = unique_prefix()
    client = await Client.connect(redis_url, prefix=prefix, codec=chain(("k1", KEY_OLD)))
    try:
        async with running_worker(
            client, task_queue="secret", workflows=[SecretEcho], activities=[stamp]
        ):
            handle = await client.start_workflow(
                SecretEcho.run, CARD, PADDING, id="secret-1", task_queue="secret"
            )
            await handle.signal(SecretEcho.annotate, NOTE)
            with anyio.fail_after(15):
                result = await handle.result()
            assert result == {"receipt": f"charged {CARD}", "note": NOTE, "padding": PADDING}
            assert await handle.query(SecretEcho.last_note) == NOTE
        stored = await everything_stored(client.redis, prefix)
        assert b"SecretEcho" in stored  # names are plaintext: the scan did see the data
        for secret in SECRETS:
            assert secret not in stored
        history = [e async for e in handle.fetch_history()]
        assert history[0].attributes["input"] == [CARD, PADDING]
    finally:
        async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
            await client.redis.delete(key)
        await client.close()


async def test_rotation_reads_old_histories(redis_url: str) -> None:
    """Runs written under the old key stay readable after a new key becomes active."""
    prefix = unique_prefix()
    old = await Client.connect(redis_url, prefix=prefix, codec=chain(("k1", KEY_OLD)))
    rotated = await Client.connect(
        redis_url, prefix=prefix, codec=chain(("k2", KEY_NEW), ("k1", KEY_OLD))
    )
    try:
        async with running_worker(
            rotated, task_queue="secret", workflows=[SecretEcho], activities=[stamp]
        ):
            # Started by a client that still encrypts with the old key.
            handle = await old.start_workflow(
                SecretEcho.run, CARD, "", id="secret-rot", task_queue="secret"
            )
            await rotated.get_workflow_handle("secret-rot").signal("annotate", NOTE)
            with anyio.fail_after(15):
                result = await rotated.get_workflow_handle(handle.id).result()
            assert result["receipt"] == f"charged {CARD}"
        raw: Any = await rotated.redis.hget(rotated.keys.workflow("secret-rot"), "result")
        assert raw is not None and raw.startswith(b"\xc1e1\x02k2")  # the new key wrote it
        with pytest.raises(PayloadError, match="key 'k2', which is not configured"):
            await handle.result()  # a client that lacks the new key says so
    finally:
        async for key in old.redis.scan_iter(match=f"{prefix}:*", count=1000):
            await old.redis.delete(key)
        await old.close()
        await rotated.close()


# --- the CLI, configured by the environment -------------------------------------------


def env_with_keys(*keys: tuple[str, bytes]) -> dict[str, str]:
    return {
        **ENV,
        "REDURABLE_ENCRYPTION_KEYS": ",".join(
            f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys
        ),
        "REDURABLE_COMPRESSION": "zlib",
    }


def test_cli_worker_and_commands_decode_with_the_env(cli: Cli) -> None:  # noqa: F811
    env = env_with_keys(("k1", KEY_OLD))
    identity = f"secret-worker-{cli.prefix}"
    worker = subprocess.Popen(
        redurable(
            "worker", "tests.integration.secret_workflows", "-q", "secret",
            "--identity", identity, "--log-level", "WARNING",
            "--redis-url", cli.url, "--prefix", cli.prefix,
        ),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    r = sync_redis(cli.url)
    try:
        started = cli(
            "workflow", "start", "SecretEcho", "--id", "cli-secret", "-q", "secret",
            "-i", json.dumps(CARD), "-i", json.dumps(PADDING), env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        signalled = cli("workflow", "signal", "cli-secret", "annotate",
                        "-i", json.dumps(NOTE), env=env)  # fmt: skip
        assert signalled.returncode == 0, signalled.stderr
        done = cli("workflow", "result", "cli-secret", "-o", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert f"charged {CARD}" in done.stdout and NOTE in done.stdout

        shown = cli("workflow", "show", "cli-secret", "-o", "json", env=env)
        assert shown.returncode == 0, shown.stderr
        events = json.loads(shown.stdout)
        assert events[0]["attributes"]["input"] == [CARD, PADDING]
        assert NOTE in shown.stdout and f"charged {CARD}" in shown.stdout
        described = cli("workflow", "describe", "cli-secret", "-o", "json", env=env)
        assert json.loads(described.stdout)["status"] == "COMPLETED"

        keys = Keys(cli.prefix, int(r.hget(f"{cli.prefix}:config", "shards") or 0))
        history: Any = r.xrange(keys.history("cli-secret"))
        raw = b"".join(k + v for _, fields in history for k, v in fields.items())
        assert b"WorkflowExecutionStarted" in raw
        for secret in SECRETS:
            assert secret not in raw

        # Without the keys: history still shows, payloads stay opaque, and the result
        # is a one-line error that says what is wrong.
        plain_env = {k: v for k, v in ENV.items() if not k.startswith("REDURABLE_ENC")}
        opaque = cli("workflow", "show", "cli-secret", "-o", "json", env=plain_env)
        assert opaque.returncode == 0, opaque.stderr
        assert CARD not in opaque.stdout
        assert "base64" in json.loads(opaque.stdout)[0]["attributes"]["input"]
        refused = cli("workflow", "result", "cli-secret", env=plain_env)
        assert_one_line_error(refused, "compressed or encrypted")
        # A key list that lacks the key that wrote it names the missing key id.
        wrong = cli("workflow", "result", "cli-secret", env=env_with_keys(("k9", KEY_NEW)))
        assert_one_line_error(wrong, "'k1'", "not configured")
        # Bad configuration is a one-line error too.
        bad = cli("workflow", "describe", "cli-secret",
                  env={**env, "REDURABLE_ENCRYPTION_KEYS": "k1:###"})
        assert_one_line_error(bad, "REDURABLE_ENCRYPTION_KEYS", "not valid base64")
    finally:
        r.close()
        stop_worker(worker)
    assert worker.returncode == 0
