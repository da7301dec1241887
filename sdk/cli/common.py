"""What every CLI command shares: options, connecting, user errors, and output.

Conventions (docs/cli.md): inputs are JSON values given one per `--input`; `--output json`
prints one stable JSON document (or JSON lines when following); anything a user can get
wrong ends as one line on stderr and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console

from engine.functions import LibraryMissingError
from sdk._devserver import DEFAULT_DEV_PORT
from sdk.client.client import Client, HistoryEvent
from sdk.client.codec_config import codec_from_env

#: Where commands look when no URL is configured: the server `redurable dev` starts.
DEV_URL = f"redis://127.0.0.1:{DEFAULT_DEV_PORT}"

T = TypeVar("T")


class Output(StrEnum):
    table = "table"
    json = "json"


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDURABLE_URL",
        help=f"Server URL (default: {DEV_URL}, where `redurable dev` listens).",
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

# Lines are never wrapped (tables still fit the terminal): a long id stays greppable.
stdout = Console(highlight=False, soft_wrap=True)
# Errors are one line however narrow the terminal: never wrapped.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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


@contextlib.asynccontextmanager
async def connect(url: str | None, prefix: str) -> AsyncIterator[Client]:
    """A Client for the command; a server that cannot be reached is a one-line error
    that says how to start one when the user configured no URL."""
    target = url or DEV_URL
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


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def local_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes | bytearray):
        # Payloads the codec could not decode: keep them, losslessly.
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, Enum):
        return value.value
    return repr(value)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, default=_json_default, indent=indent, ensure_ascii=False)


def print_json(value: Any, *, lines: bool = False) -> None:
    """JSON on stdout: indented, or one compact document per line (`lines`)."""
    sys.stdout.write(to_json(value, indent=None if lines else 2) + "\n")
    sys.stdout.flush()


def event_json(event: HistoryEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "timestamp": iso(event.timestamp),
        "attributes": event.attributes,
    }


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict) and "message" in value:
        value = value["message"]  # a failure document: its message says it all
    text = value if isinstance(value, str) else to_json(value, indent=None)
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: Attributes left out of tables (JSON output has them): long, and rarely what one reads
#: a history for. `now` is the Time column again, in epoch milliseconds.
TABLE_HIDDEN = frozenset({"options", "history_version", "now"})


def event_details(event: HistoryEvent) -> str:
    """One line of an event's attributes for tables (empty values left out)."""
    return " ".join(
        f"{k}={_short(v)}"
        for k, v in event.attributes.items()
        if v not in ("", None, {}, []) and k not in TABLE_HIDDEN
    )


STATUS_STYLE = {
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELED": "yellow",
    "TERMINATED": "red",
    "TIMED_OUT": "red",
    "CONTINUED_AS_NEW": "blue",
}


def styled_status(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status
