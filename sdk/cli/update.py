"""`redurable workflow update ID NAME --input ...`: send an update and print its result
(registered on the `workflow` command group by sdk/cli/workflow.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.text import Text

from engine.errors import WorkflowUpdateFailedError
from engine.keys import DEFAULT_PREFIX
from sdk._present import to_json
from sdk.cli.common import (
    IdArgument,
    Output,
    OutputOption,
    PrefixOption,
    UrlOption,
    fail,
    parse_inputs,
    print_json,
    stdout,
    with_client,
)
from sdk.client.client import Client

UpdateInputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        help="One argument as a JSON value; repeat for more (--input 3 --input '\"text\"').",
        show_default=False,
    ),
]


def update(
    workflow_id: IdArgument,
    name: Annotated[str, typer.Argument(help="Update name, e.g. add_tip.")],
    inputs: UpdateInputOption = None,
    update_id: Annotated[
        str | None,
        typer.Option("--update-id", help="Update id (default: a random one). The same id "
                     "again is applied once and prints the same result.", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for the outcome (default: as long as it takes, "
                     "e.g. until a worker runs it).", show_default=False),
    ] = None,
    redis_url: UrlOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    output: OutputOption = Output.table,
) -> None:
    """Send an update to a running workflow and print its handler's result."""
    args = parse_inputs(inputs)

    async def body(client: Client) -> Any:
        handle = client.get_workflow_handle(workflow_id)
        sent = handle.execute_update(name, *args, id=update_id)
        try:
            return await (sent if timeout is None else asyncio.wait_for(sent, timeout))
        except TimeoutError:
            fail(f"update {name} of {workflow_id} had no outcome within {timeout:g} s; it "
                 "stays sent: a worker of the workflow's task queue will run it")
        except WorkflowUpdateFailedError as exc:
            fail(f"{exc}: {exc.cause}")

    result = with_client(redis_url, prefix, body)
    if output is Output.json:
        print_json({"workflow_id": workflow_id, "update": name, "result": result})
    else:
        stdout.print(Text(to_json(result)))
