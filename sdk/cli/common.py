"""What every CLI command shares: options, connecting, user errors, and output.

Conventions (docs/cli.md): inputs are JSON values given one per `--input`; `--output json`
prints one stable JSON document (or JSON lines when following); anything a user can get
wrong ends as one line on stderr and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.text import Text

from engine.functions import LibraryMissingError
from sdk._present import STATUS_STYLE, status_text, to_json
from sdk.cli.tables import UNLIMITED, Cell, Column, fit, output_width, print_fitted
from sdk.client.client import Client
from sdk.client.codec_config import codec_from_env
from sdk.client.server_url import CLI_DEFAULT_URL, cli_url

T = TypeVar("T")


class Output(StrEnum):
    table = "table"
    json = "json"


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDURABLE_URL",
        help=f"Server URL (default: {CLI_DEFAULT_URL}, where `redurable dev` listens).",
        show_default=False,
    ),
]
PrefixOption = Annotated[
    str,
    typer.Option("--prefix", envvar="REDURABLE_PREFIX", help="Namespace (key prefix)."),
]
IdArgument = Annotated[str, typer.Argument(help="Workflow id.", show_default=False)]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts.")
]


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 1."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body on asyncio (redis-py is asyncio-only), on uvloop when
    it is installed: a worker spends much of its CPU in the event loop and socket
    writes, which uvloop does several times cheaper."""
    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": has_uvloop()})


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def with_client(url: str | None, prefix: str, fn: Callable[[Client], Awaitable[T]]) -> T:
    """Run `fn` with a Client of the command's server and namespace, then close it: the
    opening every command that talks to a server shares."""

    async def body() -> T:
        async with connect(url, prefix) as client:
            return await fn(client)

    return run(body)


@contextlib.asynccontextmanager
async def connect(url: str | None, prefix: str) -> AsyncIterator[Client]:
    """A Client for the command; a server that cannot be reached is a one-line error
    that says how to start one when the user configured no URL."""
    target = url or cli_url()
    try:
        client = await Client.connect(
            target, prefix=prefix, codec=codec_from_env(), socket_connect_timeout=5
        )
    except ValueError as exc:  # a malformed URL, a bad prefix or codec setting
        fail(str(exc))
    except LibraryMissingError as exc:
        fail(str(exc))
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        hint = (
            "; start a dev server with `redurable dev`, or pass --redis-url "
            "(or set REDURABLE_URL) to use another one"
            if url is None
            else ""
        )
        fail(f"cannot reach a server at {redacted(target)}: {_first_line(exc)}{hint}")
    except RedisError as exc:
        fail(f"server at {redacted(target)} refused the connection: {_first_line(exc)}")
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


def redacted(url: str) -> str:
    """The URL for messages: its password replaced, so errors and logs never show it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def parse_inputs(values: list[str] | None) -> list[Any]:
    """`--input` values: each one JSON value, one positional argument."""
    args: list[Any] = []
    for text in values or []:
        try:
            args.append(json.loads(text))
        except json.JSONDecodeError as exc:
            fail(
                f"--input {text!r} is not valid JSON ({exc.msg}); "
                f"each --input is one JSON value, strings need quotes: --input '\"text\"'"
            )
    return args


# --- output -------------------------------------------------------------------------------

#: Columns of the output (sdk/cli/tables.py): None when stdout is a pipe or a file
#: without COLUMNS set, where nothing is squeezed.
WIDTH = output_width()
# Lines are never wrapped (tables fit WIDTH without cutting ids): a long id stays greppable.
stdout = Console(highlight=False, soft_wrap=True, width=WIDTH or UNLIMITED)
# Errors are one line however narrow the terminal: never wrapped.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any, *, lines: bool = False) -> None:
    """JSON on stdout: indented, or one compact document per line (`lines`)."""
    sys.stdout.write(to_json(value, indent=None if lines else 2) + "\n")
    sys.stdout.flush()


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], **options: Any) -> None:
    """A table fitted to the output (sdk/cli/tables.py), on stdout."""
    print_fitted(stdout, fit(columns, rows, WIDTH, **options), WIDTH)


def status_cell(status: object, *, dead_lettered: bool = False) -> Text:
    """A workflow status, coloured as in every table; a run whose workflow task is in
    the dead letters is RUNNING in name only, and says so."""
    text = status_text(status)
    if dead_lettered:
        return Text(f"{text} (dead-lettered)", style="bold red")
    return Text(text, style=STATUS_STYLE.get(text, ""))
