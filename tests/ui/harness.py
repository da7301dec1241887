"""The UI server for tests and scripts/ui_screenshots.py: uvicorn on a free port of
127.0.0.1, in a thread with its own event loop and its own Client (a redis-py pool
belongs to one loop), so the test's loop stays free for the browser and the worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from sdk import Client
from sdk.ui.server import bind, make_server


@contextmanager
def ui_server(redis_url: str, prefix: str) -> Iterator[str]:
    """Serve the UI of namespace `prefix` for the block; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    holder: list[uvicorn.Server] = []
    ready = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        client = await Client.connect(redis_url, prefix=prefix)
        try:
            server = make_server(client)
            holder.append(server)
            ready.set()
            await server.serve(sockets=[sock])
        finally:
            await client.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="ui-server", daemon=True)
    thread.start()
    try:
        if not ready.wait(15) or failed:
            raise RuntimeError(f"the UI server did not start: {failed}")
        server = holder[0]
        for _ in range(300):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        if not server.started:
            raise RuntimeError(f"the UI server did not start listening: {failed}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if holder:
            holder[0].should_exit = True
        thread.join(15)
        sock.close()
