"""`rediss://` URLs, for redis-py's pool and the engine's own RESP client alike, against
a private redis-server that accepts TLS only and requires client certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.resp import RespPool
from engine.tls import ssl_context_from_query
from sdk import Client
from sdk._devserver import free_port
from tests.conftest import unique_prefix
from tests.integration.private_server import (
    Pki,
    debian_redis_server,
    make_pki,
    private_server,
    run_smoke_workflow,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Pki]]:
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    port = free_port()
    args = [
        "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes",
    ]  # fmt: skip
    with private_server(debian_redis_server(), directory, *args, port=port):
        yield port, pki


def url(port: int, host: str = "127.0.0.1", **options: str | Path) -> str:
    return f"rediss://{host}:{port}/?{urlencode({k: str(v) for k, v in options.items()})}"


def trusted(port: int, pki: Pki, host: str = "127.0.0.1") -> str:
    return url(
        port, host, ssl_ca_certs=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key
    )


async def test_workflow_runs_over_tls(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    client = await Client.connect(trusted(port, pki), prefix=unique_prefix())
    try:
        assert client.fast is not None and client.fast.ssl_context is not None
        await run_smoke_workflow(client)
        # The engine's own client carried the transitions, over TLS (the server has
        # no plain-text port).
        assert client.fast.commands_sent > 0
    finally:
        await client.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_both_clients_verify_and_connect(tls_server: tuple[int, Pki], host: str) -> None:
    port, pki = tls_server
    fast = RespPool.from_url(trusted(port, pki, host))
    try:
        assert await fast.execute("PING") == b"PONG"
    finally:
        await fast.close()


async def test_untrusted_server_certificate_is_refused(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    untrusting = url(
        port, ssl_ca_certs=pki.other_ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key
    )
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await Client.connect(untrusting, prefix=unique_prefix())
    fast = RespPool.from_url(untrusting)
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await fast.execute("PING")
    finally:
        await fast.close()


async def test_cert_reqs_none_skips_server_verification(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    unverified = url(
        port, ssl_cert_reqs="none", ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key
    )
    client = await Client.connect(unverified, prefix=unique_prefix())
    try:
        assert client.fast is not None
        assert await client.redis.ping()
        assert await client.fast.execute("PING") == b"PONG"
    finally:
        await client.close()


async def test_server_requires_a_client_certificate(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    no_client_cert = url(port, ssl_ca_certs=pki.ca)
    with pytest.raises(RedisConnectionError):
        await Client.connect(no_client_cert, prefix=unique_prefix())
    fast = RespPool.from_url(no_client_cert)
    try:
        with pytest.raises(RedisConnectionError):
            await fast.execute("PING")
    finally:
        await fast.close()


def test_query_options_are_read_like_redis_py() -> None:
    default = ssl_context_from_query({})
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    none = ssl_context_from_query({"ssl_cert_reqs": ["none"]})
    assert none.verify_mode == ssl.CERT_NONE and not none.check_hostname
    no_names = ssl_context_from_query({"ssl_check_hostname": ["false"]})
    assert no_names.verify_mode == ssl.CERT_REQUIRED and not no_names.check_hostname
    with pytest.raises(ValueError, match=r"ssl_cert_reqs='maybe'.*none, optional or required"):
        ssl_context_from_query({"ssl_cert_reqs": ["maybe"]})
    with pytest.raises(ValueError, match="ssl_check_hostname='perhaps'"):
        ssl_context_from_query({"ssl_check_hostname": ["perhaps"]})


def test_credentials_in_the_url_are_percent_decoded() -> None:
    pool = RespPool.from_url("rediss://us%40er:p%3Ass%40w@127.0.0.1:1/?ssl_cert_reqs=none")
    assert (pool.username, pool.password) == ("us@er", "p:ss@w")
    assert pool.ssl_context is not None


async def test_bad_tls_option_fails_before_connecting() -> None:
    # Nothing listens on port 1: a connection attempt would be a ConnectionError.
    with pytest.raises(ValueError, match="ssl_check_hostname='perhaps'"):
        await Client.connect("rediss://127.0.0.1:1/?ssl_check_hostname=perhaps")
