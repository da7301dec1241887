"""The `redurable` command: dev server, demo, worker, and `workflow ...` (docs/cli.md)."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.text import Text

from engine.errors import RedurableError
from engine.keys import DEFAULT_PREFIX
from sdk._definitions import _ACTIVITY, _WORKFLOW
from sdk._devserver import DEFAULT_DEV_PORT, EmbeddedServer, ServerError
from sdk._log import configure_logging
from sdk.cli import admin as _cli_admin
from sdk.cli import demo as _cli_demo
from sdk.cli import dlq as _cli_dlq
from sdk.cli import replay as _cli_replay
from sdk.cli import schedule as _cli_schedule
from sdk.cli import ui as _cli_ui
from sdk.cli import workflow as _cli_workflow
from sdk.cli.common import CliError, PrefixOption, UrlOption, fail, stderr, stdout, with_client
from sdk.client.client import Client
from sdk.worker.worker import Worker

app = typer.Typer(
    name="redurable",
    help="Durable execution for Python on Redis Streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        try:
            number = metadata.version("redurable")
        except metadata.PackageNotFoundError:  # run from a source tree that is not installed
            number = "unknown (not installed)"
        stdout.print(Text(f"redurable {number}"))
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print the version of redurable and exit."),
    ] = False,
) -> None:
    """Options of `redurable` itself, before the command."""


_cli_workflow.app.command()(_cli_replay.replay)
app.add_typer(_cli_workflow.app, name="workflow")
app.add_typer(_cli_dlq.app, name="dlq")
app.add_typer(_cli_schedule.app, name="schedule")
app.command(name="demo")(_cli_demo.demo)
app.command(name="ui")(_cli_ui.ui)
app.command(name="load-functions")(_cli_admin.load_functions)


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = DEFAULT_DEV_PORT,
    db_dir: Annotated[
        Path | None,
        typer.Option(help="Keep data here across restarts (AOF); default: in memory only."),
    ] = None,
) -> None:
    """Run a Redis-compatible server for development (the embedded Valkey) until Ctrl-C."""
    server = EmbeddedServer(port=port, db_dir=db_dir)
    try:
        server.start()
    except ServerError as exc:
        hint = " (is `redurable dev` already running? or pick another --port)"
        fail(f"cannot start the dev server: {exc}{hint if 'in use' in str(exc) else ''}")
    stopped = threading.Event()
    # The server runs in its own session, so Ctrl-C reaches only us: we stop it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        where = f"data in {server.db_dir}" if db_dir else "in memory: --db-dir DIR keeps data"
        stdout.print(f"redurable dev server: [bold]{server.url}[/] ({where})")
        if port == DEFAULT_DEV_PORT:
            stdout.print("Other redurable commands use it by default. Ctrl-C to stop.")
        else:
            stdout.print(f"Use it with: export REDURABLE_URL={server.url}. Ctrl-C to stop.")
        sys.stdout.flush()
        while not stopped.wait(0.5):
            if server.process is None or server.process.poll() is not None:
                fail(f"the dev server exited unexpectedly (see {server.db_dir}/server.log)")
    finally:
        server.stop()
    stdout.print("dev server stopped")


@app.command()
def worker(
    module: Annotated[
        str, typer.Argument(help="Python module with the workflows and activities to run.")
    ],
    task_queue: Annotated[str, typer.Option("--task-queue", "-q", help="Task queue to poll.")],
    concurrency: Annotated[
        int, typer.Option(min=1, help="Activities run at the same time, at most.")
    ] = 100,
    identity: Annotated[
        str | None, typer.Option(help="Worker id (default: host:pid:random).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_json: Annotated[bool, typer.Option(help="Log JSON lines instead of text.")] = False,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Run a worker for MODULE's workflows and activities until Ctrl-C or SIGTERM.

    It registers the module's WORKFLOWS and ACTIVITIES lists when it has them, else
    every @workflow.defn class and @activity.defn function in it.
    """
    if log_level.upper() not in logging.getLevelNamesMapping():
        fail(f"--log-level {log_level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    workflows, activities = discover(import_module(module))
    if not workflows and not activities:
        fail(f"module {module!r} defines no @workflow.defn class and no @activity.defn function")
    configure_logging(json=log_json, level=log_level)

    async def body(client: Client) -> None:
        await Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            activities=activities,
            max_concurrent_activities=concurrency,
            identity=identity,
        ).run()  # returns after SIGTERM/SIGINT, once in-flight work is drained

    with_client(redis_url, prefix, body)


def import_module(name: str) -> ModuleType:
    """Import the user's module as `python -m` would: from the current directory too."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            fail(f"no module named {name!r} (run from the directory that contains it)")
        fail(f"cannot import {name!r}: {exc}")
    except Exception as exc:
        # A bug in the user's module: say where, in one line.
        if isinstance(exc, SyntaxError):
            fail(f"cannot import {name!r}: SyntaxError: {exc.msg} ({exc.filename}:{exc.lineno})")
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({frame.filename}:{frame.lineno})" if frame else ""
        fail(f"cannot import {name!r}: {type(exc).__name__}: {exc}{where}")


def discover(module: ModuleType) -> tuple[list[type], list[Callable[..., Any]]]:
    """The module's WORKFLOWS/ACTIVITIES lists, else its decorated classes/functions."""
    workflows: list[type] | None = getattr(module, "WORKFLOWS", None)
    activities: list[Callable[..., Any]] | None = getattr(module, "ACTIVITIES", None)
    members = [member for _, member in inspect.getmembers(module)]
    if workflows is None:
        workflows = [m for m in members if inspect.isclass(m) and hasattr(m, _WORKFLOW)]
    if activities is None:
        activities = [
            m for m in members if callable(m) and not inspect.isclass(m) and hasattr(m, _ACTIVITY)
        ]
    return list(workflows), list(activities)


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console script: user errors are one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="redurable", standalone_mode=False)
    except Exception as exc:
        code = _report(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException) -> int:
    """Print a user error as one line and return the exit code; re-raise bugs."""
    exc = _leaf(exc)
    if isinstance(exc, CliError | RedurableError):
        message = str(exc)
    elif isinstance(exc, RedisConnectionError | RedisTimeoutError):
        message = f"lost the connection to the server: {exc}"
    elif isinstance(exc, RedisError):
        message = f"server error: {exc}"
    elif callable(getattr(exc, "format_message", None)) and isinstance(
        getattr(exc, "exit_code", None), int
    ):
        # A usage error from the command-line parser (click, inside typer).
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", "redurable")
        text = exc.format_message()  # type: ignore[attr-defined]
        if text:  # empty when the parser already printed the help (no arguments)
            stderr.print(Text(f"{path}: {text} (see {path} --help)"))
        return int(exc.exit_code)  # type: ignore[attr-defined]
    else:
        raise exc
    stderr.print(Text(f"error: {message}"))
    return 1


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    main()
