"""TCP keepalive for every connection to Redis, so that a server host that vanishes
without closing its connections (powered off, cut off by the network) is noticed.

Why: a blocked read (XREADGROUP BLOCK, a pub/sub subscription) or a call waiting for
its reply hears nothing from such a host, and without keepalive the kernel never
gives up on an idle connection (and takes ~15 minutes of retransmissions on one with
unacknowledged data): the worker would wait on it for ever instead of reconnecting to
whichever server now holds the data (a Sentinel failover, a restarted host). A server
that is merely busy still answers the probes (they are the kernel's, not Redis's).
"""

from __future__ import annotations

import socket
from typing import Any

#: Seconds of silence before the first probe, between probes, and how many unanswered
#: probes (or seconds of unacknowledged data, TCP_USER_TIMEOUT) end the connection:
#: a vanished host is noticed within about KEEPALIVE_IDLE_S + INTERVAL_S x COUNT (25 s).
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
USER_TIMEOUT_MS = (KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT) * 1000


def keepalive_options() -> dict[int, int]:
    """TCP-level options (those this platform has), for redis-py's
    `socket_keepalive_options` and for the lean client's sockets."""
    wanted = {
        "TCP_KEEPIDLE": KEEPALIVE_IDLE_S,
        "TCP_KEEPINTVL": KEEPALIVE_INTERVAL_S,
        "TCP_KEEPCNT": KEEPALIVE_COUNT,
        "TCP_USER_TIMEOUT": USER_TIMEOUT_MS,
    }
    return {getattr(socket, name): value for name, value in wanted.items()
            if hasattr(socket, name)}


def redis_py_keepalive(kwargs: dict[str, Any]) -> None:
    """Turn keepalive on for a redis-py client's connections, unless the caller chose."""
    kwargs.setdefault("socket_keepalive", True)
    kwargs.setdefault("socket_keepalive_options", keepalive_options())


def set_keepalive(sock: Any) -> None:
    """Turn keepalive on for a connected socket (a TCP one; a Unix socket is left)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in keepalive_options().items():
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
