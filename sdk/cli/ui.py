"""`redurable ui`: the web UI (docs/ui.md). Its libraries come with the `ui` extra and
are imported only when the command runs, so the CLI works without them."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.keys import DEFAULT_PREFIX
from sdk.cli.common import PrefixOption, UrlOption, fail, stdout, with_client
from sdk.client.client import Client

DEFAULT_UI_PORT = 8233
INSTALL_HINT = "the web UI needs the ui extra: pip install 'redurable[ui]'"


def ui(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but 127.0.0.1 exposes it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = (
        DEFAULT_UI_PORT
    ),
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Serve the web UI for a namespace until Ctrl-C: workflows, history, queries,
    signals, task queues."""
    try:
        from sdk.ui.server import bind, make_server, serve_until_stopped
    except ImportError as exc:
        fail(f"{INSTALL_HINT} ({exc})")
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another --port)")

    async def serve(client: Client) -> None:
        server = make_server(client, host=host)
        shown = f"[{host}]" if ":" in host else host
        stdout.print(f"redurable ui: [bold]http://{shown}:{sock.getsockname()[1]}/[/] "
                     f"(namespace {prefix}). Ctrl-C to stop.")
        await serve_until_stopped(server, sock)

    try:
        # The same client as every command's: codec configuration there applies here.
        with_client(redis_url, prefix, serve)
    finally:
        sock.close()
