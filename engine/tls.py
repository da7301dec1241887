"""TLS for the engine's own RESP client (engine.resp): the SSL context a `rediss://`
URL asks for, read from the same query options redis-py takes, with the same defaults,
so one URL means the same thing to both clients that Client.connect opens."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
TRUE = ("1", "true", "yes", "y", "on")
FALSE = ("0", "false", "no", "n", "off")


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def ssl_context_from_query(query: Mapping[str, list[str]]) -> ssl.SSLContext:
    """The context for `rediss://...?ssl_ca_certs=&ssl_certfile=&ssl_keyfile=
    &ssl_cert_reqs=&ssl_check_hostname=`: the server's certificate is verified against
    the system's CAs plus `ssl_ca_certs`, and its name checked, unless
    `ssl_cert_reqs=none`; `ssl_certfile`/`ssl_keyfile` is the client certificate for
    servers that require one (tls-auth-clients)."""
    reqs_text = (_one(query, "ssl_cert_reqs") or "required").lower()
    if reqs_text not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs_text!r} in the URL: use none, optional or required")
    cert_reqs = CERT_REQS[reqs_text]
    check_text = (_one(query, "ssl_check_hostname") or "true").lower()
    if check_text not in TRUE + FALSE:
        raise ValueError(f"ssl_check_hostname={check_text!r} in the URL: use true or false")
    context = ssl.create_default_context()
    # Order matters: verify_mode CERT_NONE is refused while check_hostname is on.
    context.check_hostname = check_text in TRUE and cert_reqs != ssl.CERT_NONE
    context.verify_mode = cert_reqs
    certfile = _one(query, "ssl_certfile")
    keyfile = _one(query, "ssl_keyfile")
    if certfile or keyfile:
        context.load_cert_chain(certfile=certfile or keyfile or "", keyfile=keyfile)
    cafile = _one(query, "ssl_ca_certs")
    capath = _one(query, "ssl_ca_path")
    if cafile or capath:
        context.load_verify_locations(cafile=cafile, capath=capath)
    return context
