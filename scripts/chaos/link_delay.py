"""A TCP relay on 127.0.0.1 that holds every chunk `delay_ms` before passing it on:
the replication link of a primary on another host (scripts/chaos/sentinel_group.py).
When the primary's side closes, what the relay still holds is dropped, as when the
primary's host dies with data not yet on the wire. It runs as a process of its own,
so the load of the process under test cannot slow it down:

    python -m scripts.chaos.link_delay LISTEN_PORT TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float,
                from_primary: bool) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    gone = False

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not gone:
                dst.write(chunk)

    sender = asyncio.create_task(send())
    try:
        # A SIGKILLed server's socket may end with a reset rather than EOF.
        with contextlib.suppress(OSError):
            while chunk := await src.read(1 << 16):
                queue.put_nowait((time.monotonic() + delay, chunk))
        if from_primary:
            gone = True  # what is still held dies with the primary's host
            return
        while not queue.empty():
            await asyncio.sleep(0.005)
    finally:
        sender.cancel()
        with contextlib.suppress(Exception):
            dst.close()


async def serve(listen: int, target: int, delay: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        with contextlib.suppress(OSError):
            await asyncio.gather(_pipe(up_reader, writer, delay, True),
                                 _pipe(reader, up_writer, delay, False))

    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(serve(listen, target, delay_ms / 1000))


if __name__ == "__main__":
    main()
