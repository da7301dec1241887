"""A minimal RESP2 client for the hot path: pipelined commands over asyncio streams,
replies parsed by hiredis.

Why: redis-py spends most of a worker's CPU per command (connection checkout, retry
and timeout wrappers, argument encoding). This client packs arguments itself and
parses with hiredis, which is several times cheaper per command. It is used for the
engine's transitions and the worker's task reads (`Store.read_group`); everything else
goes through redis-py.

Non-blocking commands share one multiplexed connection: concurrent callers' commands
are written together in one send (automatic pipelining) and a reader task hands the
replies back in order. A caller cancelled while waiting does not disturb that order:
its replies are still read, and dropped. Blocking commands (XREADGROUP BLOCK) use
connections of their own, handed to one call at a time and shut at once, never reused,
when a call did not finish cleanly: a late reply is never read as another's answer, and
the server frees a cancelled read before it could serve it an entry nobody would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.keepalive import set_keepalive
from engine.sentinel import SentinelUrl, is_sentinel_url, primary_address
from engine.tls import ssl_context_from_query

Arg = bytes | str | int | float


def pack_command(args: Sequence[Arg], out: list[bytes]) -> None:
    """Append the RESP encoding of one command to `out` (hiredis packs in C)."""
    # The stub types the argument as a 1-tuple; hiredis takes any length.
    out.append(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]


class NotPrimaryError(RedisConnectionError):
    """The server answered READONLY: it is a replica now (a failover demoted it). A
    ConnectionError, as redis-py's Sentinel connections raise it: the caller retries on
    a new connection, which asks the Sentinels (or the URL's DNS name) again."""


class ServerBusyError(RedisConnectionError):
    """The server answered BUSY: a script or function of someone's runs past its time
    limit, and every other command is refused until it ends or is killed (SCRIPT KILL,
    FUNCTION KILL). A ConnectionError, as LOADING is: the callers' "Redis away for a
    moment" path retries it (docs/reliability.md, "A server held by a script")."""


def _raise_if_loading(replies: Sequence[Any]) -> None:
    """A server loading its dataset (just restarted) rejects every command with a
    LOADING error reply: raise it as redis-py does, a ConnectionError (transient, worth
    a retry), never as the command's own failure. Nothing of the batch was applied while
    it loaded; a command that slipped in just after is fenced when it is retried.
    Likewise a READONLY reply (a write sent to a former primary): NotPrimaryError, and
    a BUSY reply: ServerBusyError (the commands of the batch before it may have run, as
    when a connection is lost: the callers' retries are fenced for that)."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            if str(reply).startswith("LOADING"):
                raise BusyLoadingError(str(reply))
            if str(reply).startswith("BUSY "):
                raise ServerBusyError(str(reply))
            if str(reply).startswith("READONLY"):
                raise NotPrimaryError(f"the server is not the primary any more: {reply}")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader(replyError=ResponseError)

    async def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        out: list[bytes] = []
        for command in commands:
            pack_command(command, out)
        self.writer.write(b"".join(out))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.parser.gets()
            if reply is False:
                chunk = await self.reader.read(1 << 16)
                if not chunk:
                    raise RedisConnectionError("connection closed by the server")
                self.parser.feed(chunk)
                continue
            replies.append(reply)
        return replies

    async def execute_then(
        self,
        commands: Sequence[Sequence[Arg]],
        last: Sequence[Arg],
        on_replies: Callable[[list[Any]], None],
    ) -> Any:
        """`commands` then `last` in one send: `on_replies` gets the replies of
        `commands` as soon as they are in (in this task, before `last` answers: it
        may block); returns the reply of `last`."""
        out: list[bytes] = []
        for command in commands:
            pack_command(command, out)
        pack_command(last, out)
        self.writer.write(b"".join(out))
        replies: list[Any] = []
        told = False
        while True:
            if not told and len(replies) == len(commands):
                told = True
                on_replies(replies)
                replies = []
            reply = self.parser.gets()
            if reply is False:
                chunk = await self.reader.read(1 << 16)
                if not chunk:
                    raise RedisConnectionError("connection closed by the server")
                self.parser.feed(chunk)
                continue
            if told:
                return reply
            replies.append(reply)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Close at once, after a command that did not finish (a blocking read cancelled
        or failed). The FIN leaves now, before anything this process sends next on its
        other connections, so the server frees a read still blocked here rather than
        serve it an entry nobody would see: `close()` acts only on the loop's next turn."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            # Through a duplicate descriptor: the loops' socket wrappers (uvloop's)
            # refuse shutdown(), the connection under them does not.
            with (
                contextlib.suppress(OSError, ValueError),
                socket.fromfd(sock.fileno(), sock.family, sock.type) as dup,
            ):
                dup.shutdown(socket.SHUT_RDWR)
        self.writer.close()


class _Multiplexer:
    """One connection shared by concurrent callers, replies matched in FIFO order."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self._out: list[bytes] = []
        self._waiting: deque[tuple[asyncio.Future[list[Any]], int]] = deque()
        self._flush_scheduled = False
        self.broken: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    def submit(self, commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]]:
        if self.broken is not None:
            raise RedisConnectionError(f"connection lost: {self.broken}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        for command in commands:
            pack_command(command, self._out)
        idle = not self._waiting
        self._waiting.append((future, len(commands)))
        if idle and not self._flush_scheduled:
            self._flush()  # nothing in flight: send now, latency first
        elif not self._flush_scheduled:
            # Everything submitted during this turn of the loop leaves in one send.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.broken is None:
            self.conn.writer.write(b"".join(self._out))
        self._out.clear()

    async def _read_replies(self) -> None:
        parser = self.conn.parser
        replies: list[Any] = []
        try:
            while True:
                reply = parser.gets()
                if reply is False:
                    chunk = await self.conn.reader.read(1 << 16)
                    if not chunk:
                        raise RedisConnectionError("connection closed by the server")
                    parser.feed(chunk)
                    continue
                replies.append(reply)
                future, count = self._waiting[0]
                if len(replies) == count:
                    self._waiting.popleft()
                    if not future.done():  # a cancelled caller's replies are dropped
                        future.set_result(replies)
                    replies = []
        except BaseException as exc:
            self.broken = exc
            for future, _ in self._waiting:
                if not future.done():
                    future.set_exception(RedisConnectionError(f"connection lost: {exc}"))
            self._waiting.clear()
            self.conn.close()
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise

    def close(self) -> None:
        self._reader.cancel()
        self.conn.close()


class RespPool:
    """A multiplexed connection for ordinary commands, and a pool of connections for
    blocking ones."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        #: Asked for the primary's address before each new connection (Sentinel): the
        #: connection is then checked to reach a primary (ROLE).
        self.resolver = resolver
        self.db = db
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self._idle: list[_Connection] = []
        #: Set by close(): a blocking read that ends afterwards closes its connection
        #: instead of putting it back where nothing would ever close it.
        self._closed = False
        self._mux: _Multiplexer | None = None
        self._mux_lock = asyncio.Lock()
        self.commands_sent = 0
        self.round_trips = 0
        #: CLIENT SETNAME of each new connection, when set (sdk's Client: the library
        #: version it calls, which an admin's prune keeps, engine/functions.py).
        self.client_name: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RespPool:
        if is_sentinel_url(url):
            target = SentinelUrl.parse(url)
            return cls("", 0, db=target.db, username=target.username,
                       password=target.password, ssl_context=target.ssl_context,
                       resolver=functools.partial(primary_address, target))
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported URL scheme {parsed.scheme!r} "
                             "(redis://, rediss://, redis+sentinel:// or rediss+sentinel://)")
        query = parse_qs(parsed.query)
        context = ssl_context_from_query(query) if parsed.scheme == "rediss" else None
        db = int(parsed.path.lstrip("/") or query.get("db", ["0"])[0])
        return cls(
            parsed.hostname or "localhost",
            parsed.port or 6379,
            db=db,
            # Percent-decoded as redis-py does: a password may contain '@' or ':'.
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            ssl_context=context,
        )

    async def _connect(self) -> _Connection:
        if self.resolver is not None:
            self.host, self.port = await self.resolver()
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context
            )
        except OSError as exc:
            raise RedisConnectionError(
                f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        set_keepalive(writer.get_extra_info("socket"))  # a vanished host: engine/keepalive.py
        conn = _Connection(reader, writer)
        setup: list[list[Arg]] = []
        if self.password is not None:
            setup.append(["AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            setup.append(["SELECT", self.db])
        if self.client_name is not None:
            setup.append(["CLIENT", "SETNAME", self.client_name])
        if self.resolver is not None:
            # The Sentinels may still name a primary that has just been demoted.
            setup.append(["ROLE"])
        if setup:
            try:
                self._check_setup(await conn.execute(setup))
            except BaseException:
                # Refused, lost, or the caller cancelled mid-setup: nobody else holds
                # this connection, so it closes here (else only the GC would close it).
                conn.abort()
                raise
        return conn

    def _check_setup(self, replies: list[Any]) -> None:
        _raise_if_loading(replies)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        if self.resolver is not None and replies[-1][0] != b"master":
            raise NotPrimaryError(
                f"{self.host}:{self.port} is a {replies[-1][0].decode()}, not the primary")

    async def _multiplexer(self) -> _Multiplexer:
        mux = self._mux
        if mux is not None and mux.broken is None:
            return mux
        async with self._mux_lock:
            if self._mux is None or self._mux.broken is not None:
                self._mux = _Multiplexer(await self._connect())
            return self._mux

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send commands together, return all replies in order. Error replies come
        back as ResponseError objects in their slots; a lost connection raises."""
        mux = await self._multiplexer()
        self.commands_sent += len(commands)
        self.round_trips += 1
        replies = await mux.submit(commands)
        try:
            _raise_if_loading(replies)
        except NotPrimaryError:
            # A replica now: the next call opens a connection to the primary.
            if self._mux is mux:
                mux.close()
                self._mux = None
            raise
        return replies

    async def execute(self, *args: Arg) -> Any:
        reply = (await self.execute_many([args]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute_blocking(self, *args: Arg, asking: bool = False) -> Any:
        """A command that may block (XREADGROUP ... BLOCK) on a connection of its own;
        with `asking`, after ASKING on that connection (a cluster's ASK redirection)."""
        conn = self._idle.pop() if self._idle else await self._connect()
        clean = False
        try:
            reply = (await conn.execute([("ASKING",), args] if asking else [args]))[-1]
            clean = True
        finally:
            self._give_back(conn, clean)
        self.commands_sent += 1
        self.round_trips += 1
        return self._blocking_reply(conn, reply)

    def _give_back(self, conn: _Connection, clean: bool) -> None:
        """A blocking command's connection after its reply (`clean`) or a failure (the
        command may still be pending on it: dropped)."""
        if not clean:
            conn.abort()
        elif self._closed:
            conn.close()
        else:
            self._idle.append(conn)

    def _blocking_reply(self, conn: _Connection, reply: Any) -> Any:
        """A blocking command's reply, or its error raised (a server no longer primary
        also loses the connection)."""
        try:
            _raise_if_loading([reply])
        except NotPrimaryError:
            if conn in self._idle:
                self._idle.remove(conn)
                conn.close()
            raise
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute_then_blocking(
        self,
        commands: Sequence[Sequence[Arg]],
        on_replies: Callable[[list[Any]], None],
        *args: Arg,
    ) -> Any:
        """`commands`, then a command that may block, in one send on the blocking
        command's connection (one round trip where two would follow each other: a
        poller's completions and its next read). `on_replies` gets the replies of
        `commands` (error replies in their slots) as soon as they are in, before the
        blocking command answers; a connection that fails meanwhile raises, and whether
        the commands ran is then unknown, as for `execute_many`."""
        if not commands:
            return await self.execute_blocking(*args)
        conn = self._idle.pop() if self._idle else await self._connect()
        clean = False

        def first(replies: list[Any]) -> None:
            _raise_if_loading(replies)
            on_replies(replies)

        try:
            reply = await conn.execute_then(commands, args, first)
            clean = True
        finally:
            self._give_back(conn, clean)
        self.commands_sent += len(commands) + 1
        self.round_trips += 1
        return self._blocking_reply(conn, reply)

    async def close(self) -> None:
        self._closed = True
        closing: list[asyncio.StreamWriter] = []
        if self._mux is not None:
            self._mux.close()
            closing.append(self._mux.conn.writer)
            self._mux = None
        while self._idle:
            conn = self._idle.pop()
            conn.close()
            closing.append(conn.writer)
        # A TLS connection closes with an exchange with the server: wait for it (briefly),
        # else the socket outlives the pool and leaks when the loop ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in closing), return_exceptions=True), 1
            )
