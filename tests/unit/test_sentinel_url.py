"""`redis+sentinel://` and `rediss+sentinel://` URLs (engine/sentinel.py): what they
name, and clear errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.errors import InvalidArgumentError
from engine.resp import RespPool
from engine.sentinel import SentinelUrl, is_sentinel_url


def test_one_or_more_sentinels_a_service_and_a_database() -> None:
    one = SentinelUrl.parse("redis+sentinel://10.0.0.1:26379/orders")
    assert one == SentinelUrl((("10.0.0.1", 26379),), "orders")
    many = SentinelUrl.parse("redis+sentinel://u:p%40ss@a:1,b,c:3/svc/2")
    assert many.sentinels == (("a", 1), ("b", 26379), ("c", 3))
    assert (many.service, many.db, many.username, many.password) == ("svc", 2, "u", "p@ss")
    assert is_sentinel_url("REDIS+SENTINEL://a/b")
    assert not is_sentinel_url("redis://a:6379")


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://a:26379", "names no service"),
    ("redis+sentinel://a:26379/", "names no service"),
    ("redis+sentinel://a:x/svc", "bad port"),
    ("redis+sentinel://a,,b/svc", "no host"),
    ("redis+sentinel://a/svc/zero", "database must be a number"),
    ("redis://a/svc", "not a redis\\+sentinel:// URL"),
])
def test_bad_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        SentinelUrl.parse(url)


def test_the_lean_client_asks_the_sentinels() -> None:
    pool = RespPool.from_url("redis+sentinel://:secret@127.0.0.1:26379/svc/3")
    assert pool.resolver is not None
    assert (pool.db, pool.password) == (3, "secret")
    with pytest.raises(ValueError, match="redis\\+sentinel://"):
        RespPool.from_url("http://127.0.0.1/")


def test_rediss_sentinel_is_tls_to_sentinels_and_data_nodes(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_self_signed_ca())
    url = SentinelUrl.parse(
        f"rediss+sentinel://a:1,b:2/svc/1?ssl_ca_certs={ca}&ssl_check_hostname=false"
        "&ignored=1")
    assert is_sentinel_url("REDISS+SENTINEL://a/b")
    assert (url.tls, url.sentinels, url.service, url.db) == (True, (("a", 1), ("b", 2)), "svc", 1)
    assert url.redis_py_ssl() == {"ssl": True, "ssl_ca_certs": str(ca),
                                  "ssl_check_hostname": False}
    assert url.ssl_context is not None and not url.ssl_context.check_hostname
    pool = RespPool.from_url(f"rediss+sentinel://a:1/svc?ssl_ca_certs={ca}")
    assert pool.resolver is not None and pool.ssl_context is not None
    plain = SentinelUrl.parse("redis+sentinel://a/svc?ssl_ca_certs=x.pem")
    assert (plain.tls, plain.ssl_context, plain.redis_py_ssl()) == (False, None, {})


def test_a_bad_tls_option_fails_at_parse() -> None:
    with pytest.raises(ValueError, match="ssl_cert_reqs='sometimes'"):
        SentinelUrl.parse("rediss+sentinel://a/svc?ssl_cert_reqs=sometimes")


def _self_signed_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)
