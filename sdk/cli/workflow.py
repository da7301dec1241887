"""`redurable workflow ...`: start, signal, query, cancel; the read-only views are in
sdk/cli/inspect.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import typer
from rich.text import Text

from engine.errors import WorkflowFailureError, to_failure
from engine.keys import DEFAULT_PREFIX
from sdk._present import status_text, to_json
from sdk.cli import inspect as _cli_inspect
from sdk.cli import search_attributes as _cli_search_attributes
from sdk.cli import update as _cli_update
from sdk.cli.common import (
    IdArgument,
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    fail,
    parse_inputs,
    print_json,
    stderr,
    stdout,
    with_client,
)
from sdk.cli.inspect import RunIdOption
from sdk.client.client import Client
from sdk.client.handle import WorkflowHandle
from sdk.client.registry import live_registry

app = typer.Typer(
    help="Start, signal, query and inspect workflows.",
    no_args_is_help=True,
)

InputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        help="One argument as a JSON value; repeat for more (--input 3 --input '\"text\"').",
        show_default=False,
    ),
]
WorkflowIdOption = Annotated[
    str | None,
    typer.Option(
        "--id",
        help="Workflow id (default: the type in lower case, a dash and 8 random hex digits, "
        "e.g. order-3f9c2a1b).",
        show_default=False,
    ),
]


MemoOption = Annotated[
    list[str] | None,
    typer.Option(
        "--memo",
        help="One memo entry as KEY=JSON; repeat for more (--memo n=3 --memo tenant='\"t1\"').",
        show_default=False,
    ),
]
SearchAttributeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--search-attribute",
        help="One search attribute as KEY=JSON; repeat for more (--search-attribute "
        "CustomerId='\"c-1\"' --search-attribute Amount=5). Types follow the JSON value "
        "(docs/visibility.md).",
        show_default=False,
    ),
]
ExecutionTimeoutOption = Annotated[
    float | None,
    typer.Option("--execution-timeout", help="Seconds the whole run chain may take "
                 "(across continue-as-new); past it the run ends TIMED_OUT.",
                 show_default=False),
]
RunTimeoutOption = Annotated[
    float | None,
    typer.Option("--run-timeout", help="Seconds one run may take; past it, TIMED_OUT.",
                 show_default=False),
]
TaskTimeoutOption = Annotated[
    float | None,
    typer.Option("--task-timeout", help="Seconds one workflow task may take (default: the "
                 "worker's).", show_default=False),
]


CronOption = Annotated[
    str | None,
    typer.Option("--cron", help="Cron schedule (UTC; 5 fields, or 6 with seconds first): "
                 "each run starts at a cron time, until the workflow is terminated or "
                 "cancelled."),
]


def parse_memo(values: list[str] | None, flag: str = "--memo") -> dict[str, Any] | None:
    """`--memo KEY=JSON` values as the memo mapping (None: no --memo); the same form
    for `--search-attribute`."""
    if not values:
        return None
    memo: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            fail(f"{flag} {text!r} is not KEY=JSON (e.g. {flag} n=3 {flag} tenant='\"t1\"')")
        try:
            memo[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"{flag} {text!r}: the value is not valid JSON ({exc.msg}); strings need "
                 f"quotes: {flag} {key}='\"text\"'")
    return memo


def start_options(
    memo: list[str] | None,
    execution_timeout: float | None,
    run_timeout: float | None,
    task_timeout: float | None,
    search_attributes: list[str] | None = None,
) -> dict[str, Any]:
    """The start_workflow options the command's flags give."""
    return {"memo": parse_memo(memo), "execution_timeout": execution_timeout,
            "run_timeout": run_timeout, "task_timeout": task_timeout,
            "search_attributes": parse_memo(search_attributes, "--search-attribute")}


def new_workflow_id(workflow_type: str) -> str:
    """The id of a workflow started without --id: `order-3f9c2a1b` for type Order."""
    return f"{workflow_type.lower()}-{uuid.uuid4().hex[:8]}"


#: A worker that beat within this long counts as live (it beats every second or so).
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse (exit 1) instead of warning when no live worker of the workflow's "
        "task queue registers the name.",
    ),
]


# --- start, execute, result -----------------------------------------------------------


@app.command()
def start(
    workflow_type: Annotated[str, typer.Argument(help="Workflow type, e.g. Order.")],
    task_queue: Annotated[str, typer.Option("--task-queue", "-q", help="Task queue.")],
    workflow_id: WorkflowIdOption = None,
    inputs: InputOption = None,
    memo: MemoOption = None,
    search_attribute: SearchAttributeOption = None,
    execution_timeout: ExecutionTimeoutOption = None,
    run_timeout: RunTimeoutOption = None,
    task_timeout: TaskTimeoutOption = None,
    cron: CronOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Start a workflow and print its id and run id."""
    args = parse_inputs(inputs)
    options = start_options(memo, execution_timeout, run_timeout, task_timeout,
                            search_attribute)
    options["cron_schedule"] = cron or ""
    wid = workflow_id or new_workflow_id(workflow_type)

    async def body(client: Client) -> WorkflowHandle:
        handle = await client.start_workflow(workflow_type, *args, id=wid, task_queue=task_queue,
                                             **options)
        await _warn_about_workers(client, task_queue, workflow_type)
        return handle

    handle = with_client(redis_url, prefix, body)
    doc = {
        "workflow_id": handle.id,
        "run_id": handle.run_id,
        "workflow_type": workflow_type,
        "task_queue": task_queue,
    }
    if output is Output.json:
        print_json(doc)
    else:
        stdout.print(Text(f"Started {workflow_type} {handle.id} (run {handle.run_id})"))


@app.command()
def execute(
    workflow_type: Annotated[str, typer.Argument(help="Workflow type, e.g. Order.")],
    task_queue: Annotated[str, typer.Option("--task-queue", "-q", help="Task queue.")],
    workflow_id: WorkflowIdOption = None,
    inputs: InputOption = None,
    memo: MemoOption = None,
    search_attribute: SearchAttributeOption = None,
    execution_timeout: ExecutionTimeoutOption = None,
    run_timeout: RunTimeoutOption = None,
    task_timeout: TaskTimeoutOption = None,
    cron: CronOption = None,
    timeout: Annotated[
        float | None, typer.Option(help="Give up waiting after this many seconds.")
    ] = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Start a workflow, wait for it to close, print its result (exit 1 if it failed)."""
    args = parse_inputs(inputs)
    options = start_options(memo, execution_timeout, run_timeout, task_timeout,
                            search_attribute)
    options["cron_schedule"] = cron or ""
    wid = workflow_id or new_workflow_id(workflow_type)

    async def body(client: Client) -> dict[str, Any]:
        handle = await client.start_workflow(workflow_type, *args, id=wid, task_queue=task_queue,
                                             **options)
        if output is Output.table:
            stderr.print(Text(f"Started {workflow_type} {handle.id} (run {handle.run_id})"))
        await _warn_about_workers(client, task_queue, workflow_type)
        return await _outcome(handle, timeout)

    _print_outcome(with_client(redis_url, prefix, body), output)


@app.command()
def result(
    workflow_id: IdArgument,
    timeout: Annotated[
        float | None, typer.Option(help="Give up waiting after this many seconds.")
    ] = None,
    run_id: RunIdOption = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Wait for a workflow to close and print its result (exit 1 if it did not complete).
    With --run-id, that run's own outcome (a run that continued as new: exit 1)."""

    doc = with_client(
        redis_url, prefix,
        lambda client: _outcome(client.get_workflow_handle(workflow_id, run_id=run_id), timeout),
    )
    _print_outcome(doc, output)


async def _outcome(handle: WorkflowHandle, timeout: float | None) -> dict[str, Any]:
    """How the workflow closed, as the JSON document `result` prints."""
    try:
        value = await handle.result(follow_runs=not handle.pinned_run, timeout=timeout)
    except TimeoutError:
        fail(f"workflow {handle.id!r} did not close within {timeout:g}s")
    except WorkflowFailureError as exc:
        desc = await handle.describe()
        return {
            "workflow_id": handle.id,
            "run_id": desc.run_id,
            "status": desc.status,
            "failure": to_failure(exc.cause, with_stack=False),
        }
    desc = await handle.describe()
    return {
        "workflow_id": handle.id,
        "run_id": desc.run_id,
        "status": desc.status,
        "result": value,
    }


def _print_outcome(doc: dict[str, Any], output: Output) -> None:
    if output is Output.json:
        print_json(doc)
    elif "failure" not in doc:
        stdout.print(Text(to_json(doc["result"])))
    if "failure" in doc:
        # The reason goes to stderr in both formats, so a script sees it in its log.
        stderr.print(
            Text(
                f"workflow {doc['workflow_id']} {status_text(doc['status'])}: "
                f"{doc['failure']['message']}"
            )
        )
        raise typer.Exit(1)


async def _warn_about_workers(client: Client, task_queue: str, workflow_type: str) -> None:
    """A started workflow waits silently for a worker: say so when none will run it."""
    registry = await live_registry(client, task_queue)
    if registry.live_workers == 0:
        stderr.print(
            Text(
                f"note: no worker polls task queue {task_queue!r} yet; the workflow waits "
                f"for one (redurable worker MODULE --task-queue {task_queue})"
            )
        )
        return
    problem = registry.type_problem(workflow_type)
    if problem is not None:
        stderr.print(Text(f"warning: {problem}"))


async def _check_handler(
    client: Client, handle: WorkflowHandle, kind: Literal["signal", "query"], name: str,
    strict: bool,
) -> None:
    """Say in one line when no live worker of the workflow's task queue registers this
    signal or query name: a warning (a worker with the handler may come later), or with
    `strict` an error, and nothing is sent."""
    description = await handle.describe()
    if kind == "signal" and description.status != "RUNNING":
        return  # sending fails with the reason: a closed run takes no signal
    registry = await live_registry(client, description.task_queue)
    problem = registry.handler_problem(description.workflow_type, kind, name)
    if problem is None:
        return
    if strict:
        fail(f"{problem}; not sent")
    stderr.print(Text(f"warning: {problem}; sent anyway"))


# --- signal, query, cancel, terminate ---------------------------------------------------


@app.command()
def signal(
    workflow_id: IdArgument,
    name: Annotated[str, typer.Argument(help="Signal name, e.g. picked_up.")],
    inputs: InputOption = None,
    strict: StrictOption = False,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Send a signal to a running workflow."""
    args = parse_inputs(inputs)

    async def body(client: Client) -> None:
        handle = client.get_workflow_handle(workflow_id)
        await _check_handler(client, handle, "signal", name, strict)
        await handle.signal(name, *args)

    with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"workflow_id": workflow_id, "signal": name, "sent": True})
    else:
        stdout.print(Text(f"Sent signal {name} to {workflow_id}"))


@app.command()
def query(
    workflow_id: IdArgument,
    name: Annotated[str, typer.Argument(help="Query name, e.g. get_status.")],
    inputs: InputOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a worker's answer.")] = 5.0,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Ask a worker to answer a query from the workflow's state (running or closed)."""
    args = parse_inputs(inputs)

    async def body(client: Client) -> Any:
        handle = client.get_workflow_handle(workflow_id)
        # Refused at once: no live worker would answer it now (a signal is only warned
        # about: with no live worker of the type it waits in the history for one; a
        # query has nothing to wait in).
        await _check_handler(client, handle, "query", name, strict=True)
        return await handle.query(name, *args, timeout=timeout)

    answer = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"workflow_id": workflow_id, "query": name, "result": answer})
    else:
        stdout.print(Text(to_json(answer)))


def _stop(
    workflow_id: str,
    redis_url: str | None,
    prefix: str,
    output: Output,
    request: Callable[[WorkflowHandle], Awaitable[None]],
    json_field: str,
    done: str,
) -> None:
    """The body of `cancel` and `terminate`: one request, then its confirmation."""

    with_client(redis_url, prefix, lambda client: request(client.get_workflow_handle(workflow_id)))
    if output is Output.json:
        print_json({"workflow_id": workflow_id, json_field: True})
    else:
        stdout.print(Text(f"{done} {workflow_id}"))


@app.command()
def cancel(
    workflow_id: IdArgument,
    reason: Annotated[str, typer.Option(help="Recorded in the cancel request.")] = "",
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Ask a workflow to cancel: its code sees CancelledError and may clean up."""
    _stop(workflow_id, redis_url, prefix, output, lambda h: h.cancel(reason),
          "cancel_requested", "Requested cancellation of")


@app.command()
def terminate(
    workflow_id: IdArgument,
    reason: Annotated[str, typer.Option(help="Recorded in the history.")] = "",
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """End a workflow at once: its code gets no chance to clean up."""
    _stop(workflow_id, redis_url, prefix, output, lambda h: h.terminate(reason),
          "terminated", "Terminated")


app.command()(_cli_update.update)
app.command()(_cli_inspect.describe)
app.command()(_cli_inspect.show)
app.command("list")(_cli_inspect.list_)
app.command()(_cli_inspect.count)
app.command("search-attributes")(_cli_search_attributes.search_attributes)
