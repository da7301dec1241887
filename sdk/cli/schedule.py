"""`redurable schedule create|list|describe|trigger|pause|unpause|delete` (the Schedules
API: sdk/client/schedules.py, docs/schedules.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.text import Text

from engine.keys import DEFAULT_PREFIX
from engine.schedule_spec import (
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from sdk._present import iso, local_time, spec_text
from sdk.cli.common import (
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    fail,
    parse_inputs,
    print_json,
    print_table,
    stdout,
    with_client,
)
from sdk.cli.tables import Column
from sdk.client.client import Client
from sdk.client.schedule_types import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleListDescription,
)
from sdk.client.schedules import ScheduleHandle

app = typer.Typer(
    help="Schedules: start a workflow on a cron or interval spec (docs/schedules.md).",
    no_args_is_help=True,
)

ScheduleIdArgument = Annotated[str, typer.Argument(help="Schedule id.", show_default=False)]
NoteOption = Annotated[str | None, typer.Option("--note", help="Why (shown by describe).")]


def description_json(desc: ScheduleDescription) -> dict[str, Any]:
    s, info = desc.schedule, desc.info
    return {
        "schedule_id": desc.id,
        "workflow_type": s.action.workflow,
        "workflow_id": s.action.id,
        "task_queue": s.action.task_queue,
        "args": s.action.args,
        "cron_expressions": list(s.spec.cron_expressions),
        "calendars": [c.cron() for c in s.spec.calendars],
        "intervals": [{"every_s": i.every.total_seconds(), "offset_s": i.offset.total_seconds()}
                      for i in s.spec.intervals],
        "time_zone": s.spec.time_zone_name,
        "jitter_s": s.spec.jitter.total_seconds() if s.spec.jitter else None,
        "start_at": iso(s.spec.start_at), "end_at": iso(s.spec.end_at),
        "overlap": s.policy.overlap.value,
        "catchup_window_s": s.policy.catchup_window.total_seconds(),
        "paused": s.state.paused, "note": s.state.note,
        "num_actions": info.num_actions,
        "num_actions_skipped_overlap": info.num_actions_skipped_overlap,
        "num_actions_missed_catchup_window": info.num_actions_missed_catchup_window,
        "num_buffered": info.num_buffered,
        "running": [a.workflow_id for a in info.running_actions],
        "recent_actions": [
            {"scheduled_at": iso(r.scheduled_at), "started_at": iso(r.started_at),
             "workflow_id": r.action.workflow_id, "run_id": r.action.first_execution_run_id}
            for r in info.recent_actions],
        "next_action_times": [iso(t) for t in info.next_action_times],
        "created_at": iso(info.created_at), "last_updated_at": iso(info.last_updated_at),
    }


def list_json(item: ScheduleListDescription) -> dict[str, Any]:
    nxt = item.info.next_action_times
    return {
        "schedule_id": item.id,
        "workflow_type": item.schedule.action.workflow,
        "spec": spec_text(item.schedule.spec),
        "paused": item.schedule.state.paused,
        "next_action_time": iso(nxt[0]) if nxt else None,
        "recent_actions": len(item.info.recent_actions),
    }


@app.command()
def create(
    schedule_id: ScheduleIdArgument,
    workflow_type: Annotated[str, typer.Option("--workflow", "-w", help="Workflow type.")],
    task_queue: Annotated[str, typer.Option("--task-queue", "-q", help="Task queue.")],
    workflow_id: Annotated[str | None, typer.Option(
        "--workflow-id", help="Workflow id each fire's time is appended to (default: the "
        "schedule id).")] = None,
    cron: Annotated[list[str] | None, typer.Option(
        "--cron", help="Cron expression (5 fields, or 6 with seconds first); repeatable.",
        show_default=False)] = None,
    interval: Annotated[list[float] | None, typer.Option(
        "--interval", help="Fire every this many seconds; repeatable.",
        show_default=False)] = None,
    time_zone: Annotated[str | None, typer.Option(
        "--time-zone", help="IANA time zone of the cron expressions (default UTC).")] = None,
    jitter: Annotated[float | None, typer.Option(
        "--jitter", help="Delay each fire by a random part of this many seconds.")] = None,
    overlap: Annotated[ScheduleOverlapPolicy, typer.Option(
        "--overlap", help="What a fire does while the previous workflow runs.",
        case_sensitive=False)] = ScheduleOverlapPolicy.SKIP,
    catchup_window: Annotated[float | None, typer.Option(
        "--catchup-window", help="Seconds: missed fires older than this are skipped "
        "(default one year).")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    note: NoteOption = None,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="One workflow argument as a JSON value; repeat for more.",
        show_default=False)] = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Create a schedule that starts WORKFLOW on each fire."""
    if not cron and not interval:
        fail("give at least one --cron or --interval")
    if any(i <= 0 for i in interval or []):
        fail("--interval must be positive")
    args = parse_inputs(inputs)
    policy = SchedulePolicy(overlap=overlap) if catchup_window is None else SchedulePolicy(
        overlap=overlap, catchup_window=timedelta(seconds=catchup_window))
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(workflow_type, *args, id=workflow_id or schedule_id,
                                           task_queue=task_queue),
        spec=ScheduleSpec(
            cron_expressions=cron or [],
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=s)) for s in interval or []],
            time_zone_name=time_zone,
            jitter=timedelta(seconds=jitter) if jitter else None),
        policy=policy,
        state=ScheduleState(paused=paused, note=note or ""),
    )

    async def body(client: Client) -> ScheduleDescription:
        handle = await client.create_schedule(schedule_id, schedule)
        return await handle.describe()

    desc = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json(description_json(desc))
        return
    nxt = desc.info.next_action_times
    stdout.print(Text(f"Created schedule {schedule_id}"
                      + (f", next fire {local_time(nxt[0])}" if nxt else "")))


@app.command(name="list")
def list_(
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """List the schedules of the namespace."""

    async def body(client: Client) -> list[ScheduleListDescription]:
        return [s async for s in client.list_schedules()]

    items = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"schedules": [list_json(s) for s in items]})
        return
    if not items:
        stdout.print("No schedules.")
        return
    print_table(
        [Column("Schedule id"), Column("Workflow", drop=2), Column("Spec", wrap=True),
         Column("State", drop=1), Column("Next fire", drop=3)],
        [[s.id, s.schedule.action.workflow, spec_text(s.schedule.spec),
          "paused" if s.schedule.state.paused else "active",
          local_time(s.info.next_action_times[0]) if s.info.next_action_times else ""]
         for s in items],
    )


@app.command()
def describe(
    schedule_id: ScheduleIdArgument,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Show a schedule: its spec, state, recent and next fires."""
    desc = with_client(redis_url, prefix,
                       lambda client: client.get_schedule_handle(schedule_id).describe())
    doc = description_json(desc)
    if output is Output.json:
        print_json(doc)
        return
    s, info = desc.schedule, desc.info
    lines = [
        f"Schedule     {desc.id}",
        f"Action       start {s.action.workflow} as {s.action.id}-<fire time> "
        f"on {s.action.task_queue}",
        f"Spec         {spec_text(s.spec)}",
        f"Overlap      {s.policy.overlap.value}, catch-up window {s.policy.catchup_window}",
        f"State        {'paused' if s.state.paused else 'active'}"
        + (f" ({s.state.note})" if s.state.note else ""),
        f"Actions      {info.num_actions} started, {info.num_actions_skipped_overlap} skipped "
        f"(overlap), {info.num_actions_missed_catchup_window} missed (catch-up window), "
        f"{info.num_buffered} waiting",
        f"Running      {', '.join(doc['running']) or '-'}",
        f"Next fires   {', '.join(local_time(t) for t in info.next_action_times[:3]) or '-'}",
    ]
    for line in lines:
        stdout.print(Text(line))
    if info.recent_actions:
        stdout.print(Text("Recent fires"))
        print_table(
            [Column("Scheduled"), Column("Started", drop=1), Column("Workflow id")],
            [[local_time(r.scheduled_at), local_time(r.started_at), r.action.workflow_id]
             for r in info.recent_actions],
        )


def _on_schedule(
    redis_url: str | None, prefix: str, schedule_id: str,
    act: Callable[[ScheduleHandle], Awaitable[None]], done: str,
) -> None:
    """`act` on the schedule's handle, then "<done> schedule <id>"."""
    with_client(redis_url, prefix, lambda client: act(client.get_schedule_handle(schedule_id)))
    stdout.print(Text(f"{done} schedule {schedule_id}"))


@app.command()
def trigger(
    schedule_id: ScheduleIdArgument,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Fire now (the next worker starts the workflow)."""
    _on_schedule(redis_url, prefix, schedule_id, lambda handle: handle.trigger(), "Triggered")


@app.command()
def pause(
    schedule_id: ScheduleIdArgument,
    note: NoteOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Stop firing on the spec (trigger still fires)."""
    _on_schedule(redis_url, prefix, schedule_id, lambda handle: handle.pause(note=note), "Paused")


@app.command()
def unpause(
    schedule_id: ScheduleIdArgument,
    note: NoteOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Fire on the spec again."""
    _on_schedule(redis_url, prefix, schedule_id, lambda handle: handle.unpause(note=note),
                 "Unpaused")


@app.command()
def delete(
    schedule_id: ScheduleIdArgument,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Delete the schedule (the workflows it started run on)."""
    _on_schedule(redis_url, prefix, schedule_id, lambda handle: handle.delete(), "Deleted")
