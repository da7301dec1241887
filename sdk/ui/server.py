"""Running the web UI: uvicorn serving the app on the caller's event loop, on a socket
bound beforehand (so a taken port is the caller's one-line error, not uvicorn's exit)."""

from __future__ import annotations

import socket

import uvicorn

from sdk.client.client import Client
from sdk.ui.app import create_app


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); raises OSError when that is not possible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def make_server(client: Client, *, host: str = "127.0.0.1") -> uvicorn.Server:
    """A uvicorn server for the UI of `client`'s namespace; `await server.serve(sockets=
    [bind(host, port)])` runs it until `server.should_exit` is set (or Ctrl-C, in the
    main thread)."""
    config = uvicorn.Config(
        create_app(client, host=host),
        log_level="warning",
        # Open live pages hold a server-sent-events stream each: do not wait for them
        # to end on shutdown.
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    return uvicorn.Server(config)
