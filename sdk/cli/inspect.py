"""`redurable workflow describe|show|list`: read-only views of workflows and histories."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from engine.errors import WorkflowNotFoundError
from engine.events import CLOSE_TYPES
from engine.keys import DEFAULT_PREFIX
from engine.status import WorkflowExecutionStatus
from engine.store import decode_entries
from sdk._present import (
    clock_time,
    event_details,
    event_json,
    local_time,
    short,
    summary_fields,
    to_json,
)
from sdk.cli.common import (
    WIDTH,
    IdArgument,
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    fail,
    print_json,
    print_table,
    status_cell,
    stdout,
    with_client,
)
from sdk.cli.tables import Cell, Column, fit, print_fitted
from sdk.client.client import Client
from sdk.client.types import HistoryEvent, to_history_event

#: A closed run of a run chain (continue-as-new, cron), while the namespace keeps it.
RunIdOption = Annotated[
    str | None,
    typer.Option("--run-id", "-r", help="A run of the workflow's run chain (default: the "
                 "current run); closed runs are kept for the namespace's run retention."),
]


def describe(
    workflow_id: IdArgument,
    run_id: RunIdOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Status, type, times, pending activities and the last workflow task failure."""

    async def body(client: Client) -> dict[str, Any]:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        doc = dataclasses.asdict(desc)
        del doc["typed_search_attributes"]  # the same as search_attributes, for code
        return {"workflow_id": doc.pop("id"), **doc}

    doc = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json(doc)
        return
    failure = doc["last_workflow_task_failure"]
    fields: list[list[Cell]] = [
        [Text(label, style="bold"), value]
        for label, value in (
            ("Workflow id", doc["workflow_id"]),
            ("Status", status_cell(doc["status"], dead_lettered=bool(doc["dead_letter_id"]))),
            ("Type", doc["workflow_type"]),
            ("Task queue", doc["task_queue"]),
            ("Run id", doc["run_id"]),
            ("Start", local_time(doc["start_time"])),
            ("Close", local_time(doc["close_time"])),
            ("History length", str(doc["history_length"])),
            ("Workflow task attempt", str(doc["workflow_task_attempt"])),
        )
    ]
    # Only the failure message may wrap: every other value stays whole on its line.
    whole = max(Text.assemble(value).cell_len for _, value in fields)
    fields.append([Text("Last task failure", style="bold"), failure["message"] if failure else ""])
    if doc["dead_letter_id"]:
        # The run waits for nothing but an operator: say what to do, with the id whole.
        fields.append([Text("Workflow task", style="bold"), Text(
            f"dead-lettered: {failure['message'] if failure else 'see the dead letter'}; "
            f"`redurable dlq requeue {doc['dead_letter_id']}` once fixed, or terminate it",
            style="red")])
    if doc["last_signal_dropped"]:
        fields.append([Text("Signals dropped", style="bold"), doc["last_signal_dropped"]])
    if doc["memo"]:
        fields.append([Text("Memo", style="bold"), to_json(doc["memo"], indent=None)])
    if doc["search_attributes"]:
        fields.append([Text("Search attributes", style="bold"),
                       to_json(doc["search_attributes"], indent=None)])
    if doc["parent_id"]:
        fields.append([Text("Parent", style="bold"),
                       f"{doc['parent_id']} (run {doc['parent_run_id']})"])
    for label, key in (("Execution timeout", "execution_timeout"),
                       ("Run timeout", "run_timeout"), ("Task timeout", "task_timeout")):
        if doc[key] is not None:
            fields.append([Text(label, style="bold"), f"{doc[key].total_seconds():g}s"])
    print_table(
        [Column("Field"), Column("Value", wrap=True, min_width=whole, floor=whole)],
        fields, show_header=False, box=None,
    )  # fmt: skip
    if doc["pending_activities"]:
        print_table(
            [
                Column("Id", justify="right"),
                Column("Type"),
                Column("State"),
                Column("Attempt", justify="right", drop=1),
                Column("Scheduled", drop=3),
                Column("Next attempt", drop=2),
                Column("Failure", wrap=True),
            ],
            [
                [
                    str(act["activity_id"]),
                    act["activity_type"],
                    act["state"],
                    str(act["attempt"]),
                    local_time(act["scheduled_time"]),
                    local_time(act["next_attempt_time"]),
                    (act["last_failure"] or {}).get("message", ""),
                ]
                for act in doc["pending_activities"]
            ],
            title="Pending activities",
            title_justify="left",
        )


#: Attributes whose values are ids: a history table never wraps them.
def _is_id(name: str) -> bool:
    return name == "worker" or name.endswith("id")


def print_history(events: list[HistoryEvent], title: str | None = None) -> None:
    """A history as a table: `#`, time, type and details; times are local clock times,
    the caption gives the date of the first event. Where the details would have to cut
    an id, each event's details go on the lines under its type instead."""
    caption = f"started {local_time(events[0].timestamp)} local time" if events else None
    options: dict[str, Any] = dict(
        title=title, title_justify="left", caption=caption, caption_justify="left"
    )
    ids = [f"{k}={short(v)}" for e in events for k, v in summary_fields(e) if _is_id(k)]
    min_details = max([30, *(len(token) for token in ids)])
    columns = [
        Column("#", justify="right"),
        Column("Time", drop=1),
        Column("Type", style="bold"),
        Column("Details", wrap=True, min_width=min_details, floor=min_details),
    ]
    rows: list[list[Cell]] = [
        [str(e.event_id), clock_time(e.timestamp), e.type, event_details(e)] for e in events
    ]
    fitted = fit(columns, rows, WIDTH, **options)
    if WIDTH is not None and fitted.width > WIDTH:
        stacked: list[list[Cell]] = []
        for e in events:
            cell = Text.assemble(f"{clock_time(e.timestamp)}  ", (e.type, "bold"))
            if details := event_details(e):
                cell.append(f"\n{details}")
            stacked.append([str(e.event_id), cell])
        event = Column("Time, type and details", wrap=True, min_width=min_details,
                       floor=min_details)
        fitted = fit([columns[0], event], stacked, WIDTH, **options)
    print_fitted(stdout, fitted, WIDTH)


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
    run_id: RunIdOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Print a workflow's history. JSON: an array, or with --follow one event per line."""
    if follow and run_id:
        fail("--follow follows the current run: leave out --run-id")
    if follow:

        def emit(event: HistoryEvent) -> None:
            if output is Output.json:
                print_json(event_json(event), lines=True)
            else:
                stdout.print(event_line(event), soft_wrap=True)

        with_client(redis_url, prefix, lambda client: follow_history(client, workflow_id, emit))
        return

    async def body(client: Client) -> list[HistoryEvent]:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        return [e async for e in handle.fetch_history()]

    events = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json([event_json(e) for e in events])
    else:
        print_history(events)


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


QueryOption = Annotated[
    str | None,
    typer.Option("--query", "-q", help="A visibility query, as Temporal's: "
                 "\"WorkflowType = 'Order' AND CustomerId = 'c-1'\" (docs/visibility.md)."),
]


def list_(
    query: QueryOption = None,
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
    """List workflows, newest first, one page at a time (with --query: the first
    --limit matches, in the query's order)."""
    if query is not None and (status or workflow_type or after):
        fail("give --query, or --status/--type/--after, not both")
    cursor = _decode_token(after) if after else None

    async def body(client: Client) -> tuple[list[dict[str, Any]], str | None]:
        rows: list[dict[str, Any]] = []
        if query is not None:
            listing = client.list_workflows(query, page_size=min(limit + 1, 1000),
                                            limit=limit + 1)
        else:
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
                    if query is not None:
                        return rows, "query"  # no cursor for a query: narrow it instead
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
                        "dead_letter_id": wf.dead_letter_id,
                        "search_attributes": wf.search_attributes,
                        "_start_ms": start_ms,
                    }
                )
        return rows, None

    rows, token = with_client(redis_url, prefix, body)
    for row in rows:
        del row["_start_ms"]
    more = token == "query"
    if more:
        token = None
    if output is Output.json:
        extra = {} if query is None else {"more": more}
        print_json({"workflows": rows, "next_page_token": token, **extra})
        return
    if not rows:
        stdout.print("No workflows.")
        return
    with_attributes = any(row["search_attributes"] for row in rows)
    print_table(
        [
            Column("Workflow id"),
            Column("Type", drop=1),
            Column("Status"),
            Column("Task queue", drop=4),
            Column("Start", drop=2),
            Column("Close", drop=3),
            *([Column("Search attributes", wrap=True, drop=5)] if with_attributes else []),
        ],
        [
            [
                row["workflow_id"],
                row["workflow_type"],
                status_cell(row["status"], dead_lettered=bool(row["dead_letter_id"])),
                row["task_queue"],
                local_time(row["start_time"]),
                local_time(row["close_time"]),
                *([_attributes_cell(row["search_attributes"])] if with_attributes else []),
            ]
            for row in rows
        ],
    )
    if token:
        stdout.print(Text(f"More: add --after {token}", style="dim"))
    if more:
        stdout.print(Text(f"More match: narrow the query or raise --limit (now {limit})",
                          style="dim"))


def _attributes_cell(attributes: dict[str, Any]) -> str:
    return " ".join(f"{name}={to_json(value, indent=None)}"
                    for name, value in sorted(attributes.items()))


def count(
    query: QueryOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """How many workflows match the query (all of them, without one)."""

    async def body(client: Client) -> int:
        return (await client.count_workflows(query)).count

    total = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"count": total})
    else:
        stdout.print(str(total))


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
