"""Running the web UI: uvicorn serving the app on the caller's event loop, on a socket
bound beforehand (so a taken port is the caller's one-line error, not uvicorn's exit)."""

from __future__ import annotations

import asyncio
import signal
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


async def serve_until_stopped(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve on `sock` until Ctrl-C (SIGINT) or SIGTERM, then return, so the caller
    closes its client and exits 0.

    uvicorn replaces the process's handlers of both signals while it serves and, once it
    has shut down, raises the signal it caught again for the handler it found. Left to
    Python's, that SIGINT cancels the command's task in the middle of closing the client
    (a cluster client's close awaits every node: the command then ended with status 130
    and sockets left open) and a SIGTERM kills the process. Handlers of the event loop
    for the time of the serve take that second delivery: they only ask the server to
    stop, which it is already doing (and one that reaches the loop after they are
    removed is ignored by it)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop() -> None:
        server.should_exit = True

    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve(sockets=[sock])
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
