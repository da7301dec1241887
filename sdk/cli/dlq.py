"""`redurable dlq list|requeue|drop`: the dead letters (engine/dead_letters.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.text import Text

from engine.dead_letters import DeadLetter, parse_id
from engine.keys import DEFAULT_PREFIX
from sdk._present import iso, local_time
from sdk.cli.common import (
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    fail,
    print_json,
    print_table,
    stdout,
    with_client,
)
from sdk.cli.tables import Column
from sdk.client.client import Client

app = typer.Typer(
    help="Tasks taken off their queues as poison: list, requeue or drop them.",
    no_args_is_help=True,
)

IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Dead letter ids (<shard>/<entry id> or queries:<task queue>/<entry id>, "
                        "from `dlq list`).",
                   show_default=False),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter.")]


def _time(letter: DeadLetter) -> datetime:
    return datetime.fromtimestamp(letter.time_ms / 1000, tz=UTC)


def _kind(letter: DeadLetter) -> str:
    """The Kind column: the activity type or query name when there is one."""
    if letter.activity_type:
        return f"activity {letter.activity_type}"
    if letter.kind == "query" and letter.fields.get("name"):
        return f"query {letter.fields['name'].decode(errors='replace')}"
    return letter.kind


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "kind": letter.kind,
        "task_queue": letter.task_queue,
        "workflow_id": letter.workflow_id,
        "run_id": letter.run_id,
        "activity_type": letter.activity_type or None,
        "deliveries": letter.deliveries,
        "reason": letter.reason,
        "time": iso(_time(letter)),  # as every JSON document has its times
        "stream": letter.stream,
    }


@app.command(name="list")
def list_(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """List dead letters with the reason each was taken off its queue."""

    letters = with_client(redis_url, prefix, lambda client: client.list_dead_letters(limit=limit))
    if output is Output.json:
        print_json({"dead_letters": [letter_json(letter) for letter in letters]})
        return
    if not letters:
        stdout.print("No dead letters.")
        return
    print_table(
        [
            Column("Id"),
            Column("Kind", drop=2),
            Column("Queue", drop=3),
            Column("Workflow id"),
            Column("Deliveries", justify="right", drop=1),
            Column("Time", drop=4),
            Column("Reason", wrap=True),
        ],
        [
            [
                letter.id,
                _kind(letter),
                letter.task_queue,
                letter.workflow_id,
                str(letter.deliveries),
                local_time(_time(letter)),
                letter.reason,
            ]
            for letter in letters
        ],
    )


def _chosen(ids: list[str] | None, every: bool, verb: str) -> list[str] | None:
    """The ids to act on; None means all. Exactly one of the two must be given."""
    if every and ids:
        fail(f"give dead letter ids or --all to {verb}, not both")
    if not every and not ids:
        fail(f"give the dead letter ids to {verb} (see `redurable dlq list`), or --all")
    return None if every else ids


async def _ids(client: Client, ids: list[str] | None) -> list[str]:
    if ids is None:
        return [letter.id for letter in await client.list_dead_letters()]
    for i in ids:  # every id well-formed before any is acted on
        parse_id(client.keys, i)
    return ids


def _act_on(
    verb: str,
    done_verb: str,
    act: Callable[[Client, str], Awaitable[DeadLetter]],
    ids: list[str] | None,
    every: bool,
    redis_url: str | None,
    prefix: str,
    output: Output,
    *,
    show_queue: bool,
) -> None:
    """`act` on each chosen dead letter, then report them as `<done_verb> <id> (...)`
    (or as JSON under the key done_verb)."""
    chosen = _chosen(ids, every, verb)

    async def body(client: Client) -> list[DeadLetter]:
        return [await act(client, i) for i in await _ids(client, chosen)]

    done = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({done_verb: [letter.id for letter in done]})
        return
    for letter in done:
        queue = f" on {letter.task_queue!r}" if show_queue else ""
        # Text, not markup: a workflow id may hold square brackets.
        stdout.print(Text(f"{done_verb} {letter.id} ({letter.kind} task of "
                          f"{letter.workflow_id!r}{queue})"))
    if not done:
        stdout.print("No dead letters.")


@app.command()
def requeue(
    ids: IdsArgument = None,
    every: AllOption = False,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Put dead letters back on their task queues (fix the cause first: deploy the
    workflow type, fix the data)."""
    _act_on("requeue", "requeued", Client.requeue_dead_letter,
            ids, every, redis_url, prefix, output, show_queue=True)


@app.command()
def drop(
    ids: IdsArgument = None,
    every: AllOption = False,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Delete dead letters for good. Their workflows stay as they are: terminate those
    that should end (`redurable workflow terminate ID`)."""
    _act_on("drop", "dropped", Client.drop_dead_letter,
            ids, every, redis_url, prefix, output, show_queue=False)
