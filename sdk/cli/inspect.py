"""`redurable workflow describe|show|list`: read-only views of workflows and histories."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from engine.errors import WorkflowNotFoundError
from engine.events import CLOSE_TYPES
from engine.keys import DEFAULT_PREFIX
from engine.status import WorkflowExecutionStatus
from engine.store import decode_entries
from sdk.cli.common import (
    IdArgument,
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    connect,
    event_details,
    event_json,
    fail,
    local_time,
    print_json,
    run,
    stdout,
    styled_status,
)
from sdk.client.client import Client, HistoryEvent, to_history_event


def describe(
    workflow_id: IdArgument,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Status, type, times, pending activities and the last workflow task failure."""

    async def body() -> dict[str, Any]:
        async with connect(redis_url, prefix) as client:
            desc = await client.get_workflow_handle(workflow_id).describe()
        doc = dataclasses.asdict(desc)
        return {"workflow_id": doc.pop("id"), **doc}

    doc = run(body)
    if output is Output.json:
        print_json(doc)
        return
    table = Table(show_header=False, box=None)
    failure = doc["last_workflow_task_failure"]
    for label, value in (
        ("Workflow id", Text(doc["workflow_id"])),
        ("Status", styled_status(doc["status"])),
        ("Type", Text(doc["workflow_type"])),
        ("Task queue", Text(doc["task_queue"])),
        ("Run id", doc["run_id"]),
        ("Start", local_time(doc["start_time"])),
        ("Close", local_time(doc["close_time"])),
        ("History length", str(doc["history_length"])),
        ("Workflow task attempt", str(doc["workflow_task_attempt"])),
        ("Last task failure", Text(failure["message"] if failure else "")),
    ):
        table.add_row(Text(label, style="bold"), value)
    stdout.print(table)
    if doc["pending_activities"]:
        acts = Table(title="Pending activities", title_justify="left")
        for column in ("Id", "Type", "State", "Attempt"):
            acts.add_column(column)
        acts.add_column("Scheduled", no_wrap=True)
        acts.add_column("Next attempt", no_wrap=True)
        acts.add_column("Failure")
        for act in doc["pending_activities"]:
            acts.add_row(
                str(act["activity_id"]),
                Text(act["activity_type"]),
                act["state"],
                str(act["attempt"]),
                local_time(act["scheduled_time"]),
                local_time(act["next_attempt_time"]),
                Text((act["last_failure"] or {}).get("message", "")),
            )
        stdout.print(acts)


def history_table(events: list[HistoryEvent], title: str | None = None) -> Table:
    """Times are local clock times; the caption gives the date of the first event."""
    caption = f"started {local_time(events[0].timestamp)} local time" if events else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Time", no_wrap=True)
    table.add_column("Type", style="bold", no_wrap=True)
    table.add_column("Details", overflow="fold")
    for e in events:
        table.add_row(str(e.event_id), clock_time(e.timestamp), e.type, Text(event_details(e)))
    return table


def clock_time(value: datetime) -> str:
    return value.astimezone().strftime("%H:%M:%S.%f")[:-3]


def event_line(event: HistoryEvent) -> Text:
    """One event as one line (for --follow, where a table cannot grow)."""
    line = Text(f"{event.event_id:>4}  {local_time(event.timestamp)}  ")
    line.append(f"{event.type:<34}", style="bold")
    line.append(f" {event_details(event)}")
    return line


def show(
    workflow_id: IdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events until it closes.")
    ] = False,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Print a workflow's history. JSON: an array, or with --follow one event per line."""
    if follow:

        def emit(event: HistoryEvent) -> None:
            if output is Output.json:
                print_json(event_json(event), lines=True)
            else:
                stdout.print(event_line(event), soft_wrap=True)

        async def tail() -> None:
            async with connect(redis_url, prefix) as client:
                await follow_history(client, workflow_id, emit)

        run(tail)
        return

    async def body() -> list[HistoryEvent]:
        async with connect(redis_url, prefix) as client:
            return [e async for e in client.get_workflow_handle(workflow_id).fetch_history()]

    events = run(body)
    if output is Output.json:
        print_json([event_json(e) for e in events])
    else:
        stdout.print(history_table(events))


async def follow_history(
    client: Client, workflow_id: str, emit: Callable[[HistoryEvent], None]
) -> None:
    """Emit every event of the run, then each new one as it is written (XREAD BLOCK on the
    history stream), until the run closes."""
    handle = client.get_workflow_handle(workflow_id)  # validates the id
    key, state_key = client.keys.history(handle.id), client.keys.workflow(handle.id)
    if not await client.redis.exists(state_key):
        raise WorkflowNotFoundError(handle.id)
    last = b"0-0"
    while True:
        reply: Any = await client.redis.xread({key: last}, count=500, block=1000)
        for _, entries in reply or []:
            for sid, event in decode_entries(entries):
                last = sid
                emit(to_history_event(event, client.codec))
                if event.type in CLOSE_TYPES:
                    return
        if reply:
            continue
        # Quiet for a second: stop if the run closed (or vanished) meanwhile. The close
        # event is written with the status, so one more read catches it.
        status = await client.redis.hget(state_key, "status")
        if status is None:
            raise WorkflowNotFoundError(handle.id)
        if status != WorkflowExecutionStatus.RUNNING.encode():
            rest: Any = await client.redis.xread({key: last})
            for _, entries in rest or []:
                for _, event in decode_entries(entries):
                    emit(to_history_event(event, client.codec))
            return


def list_(
    status: Annotated[
        str | None, typer.Option(help="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, ...")
    ] = None,
    workflow_type: Annotated[str | None, typer.Option("--type", help="Workflow type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Rows per page.")] = 20,
    after: Annotated[
        str | None, typer.Option(help="Continue after the page that printed this token.")
    ] = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """List workflows, newest first, one page at a time."""
    cursor = _decode_token(after) if after else None

    async def body() -> tuple[list[dict[str, Any]], str | None]:
        rows: list[dict[str, Any]] = []
        async with connect(redis_url, prefix) as client:
            listing = client.list_workflows(
                status=status.upper() if status else None,
                type=workflow_type,
                page_size=min(limit + 1, 1000),
                after=cursor,
            )
            async with contextlib.aclosing(listing):
                async for wf in listing:
                    start_ms = wf.cursor[0]
                    if len(rows) == limit:
                        last = rows[-1]
                        return rows, _encode_token(last["_start_ms"], last["workflow_id"])
                    rows.append(
                        {
                            "workflow_id": wf.id,
                            "run_id": wf.run_id,
                            "status": wf.status,
                            "workflow_type": wf.workflow_type,
                            "task_queue": wf.task_queue,
                            "start_time": wf.start_time,
                            "close_time": wf.close_time,
                            "_start_ms": start_ms,
                        }
                    )
        return rows, None

    rows, token = run(body)
    for row in rows:
        del row["_start_ms"]
    if output is Output.json:
        print_json({"workflows": rows, "next_page_token": token})
        return
    if not rows:
        stdout.print("No workflows.")
        return
    table = Table()
    for column in ("Workflow id", "Type", "Status", "Task queue"):
        table.add_column(column)
    table.add_column("Start", no_wrap=True)
    table.add_column("Close", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(row["workflow_id"]),
            Text(row["workflow_type"]),
            styled_status(row["status"]),
            Text(row["task_queue"]),
            local_time(row["start_time"]),
            local_time(row["close_time"]),
        )
    stdout.print(table)
    if token:
        stdout.print(Text(f"More: add --after {token}", style="dim"))


def _encode_token(start_ms: int, workflow_id: str) -> str:
    raw = f"{start_ms}:{workflow_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        start_ms, sep, workflow_id = raw.partition(":")
        if not sep:
            raise ValueError(token)
        return int(start_ms), workflow_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        fail(f"--after {token!r} is not a token printed by `redurable workflow list`")
