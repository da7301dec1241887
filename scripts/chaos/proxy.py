"""A TCP proxy on 127.0.0.1 that loses replies: with probability `cut_rate` it forwards
a chunk of commands to the server, waits until the server has surely run them, and
then cuts both connections before any reply goes back. The caller sees its connection
drop after the write happened: the hardest case for retries and fencing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass


@dataclass
class ProxyStats:
    connections: int = 0
    cuts: int = 0
    #: Cuts whose forwarded chunk held an FCALL: a transition ran, its reply was lost.
    cuts_after_fcall: int = 0


class CuttingProxy:
    def __init__(self, target_port: int, *, cut_rate: float, seed: int = 1,
                 cut_delay: float = 0.02, cuts_left: int | None = None,
                 cut_only: bytes | None = None) -> None:
        if not 0.0 <= cut_rate <= 1.0:
            raise ValueError("cut_rate must be between 0 and 1")
        self.target_port = target_port
        self.cut_rate = cut_rate
        self.cut_delay = cut_delay
        self.rng = random.Random(seed)
        self.stats = ProxyStats()
        self.cutting = True
        #: When set, cutting stops after this many more cuts (tests cut one call).
        self.cuts_left = cuts_left
        #: When set, only chunks holding these bytes (a command name) are cut.
        self.cut_only = cut_only
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            self._tasks.discard(task)
            return
        cut = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._upstream(c_reader, s_writer, cut))
                tg.create_task(self._downstream(s_reader, c_writer, cut))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (c_writer, s_writer):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._tasks.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        cut: asyncio.Event) -> None:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
            if (self.cutting and self.cuts_left != 0
                    and (self.cut_only is None or self.cut_only in chunk.upper())
                    and self.rng.random() < self.cut_rate):
                if self.cuts_left is not None:
                    self.cuts_left -= 1
                cut.set()  # no reply from now on: the downstream stops relaying
                await asyncio.sleep(self.cut_delay)  # the server runs what it got
                self.stats.cuts += 1
                if b"FCALL" in chunk.upper():
                    self.stats.cuts_after_fcall += 1
                raise ConnectionResetError("cut by the proxy")
        raise ConnectionResetError("client closed")

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          cut: asyncio.Event) -> None:
        while chunk := await reader.read(1 << 16):
            if cut.is_set():
                return
            writer.write(chunk)
            await writer.drain()
        raise ConnectionResetError("server closed")
