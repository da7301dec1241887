"""`redurable workflow replay FILE... --module M`: replay recorded histories (the JSON of
`redurable workflow show -o json`) against the workflow code of a module, the check to
run before deploying a change to workflows that are running."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from engine.errors import NondeterminismError
from engine.machine import ActivationFailed
from sdk._replayer import Replayer
from sdk.cli.common import fail, stdout
from sdk.client.history import WorkflowHistory


def replay(
    files: Annotated[
        list[Path],
        typer.Argument(help="History files: the output of `redurable workflow show ID -o json`."),
    ],
    module: Annotated[
        str, typer.Option("--module", "-m", help="Python module with the workflow classes.")
    ],
) -> None:
    """Replay histories against the module's workflow code; exit 1 at the first that
    the code does not replay (non-determinism), naming the event and the command."""
    from sdk.cli.main import discover, import_module  # main imports this module

    workflows, _ = discover(import_module(module))
    if not workflows:
        fail(f"module {module!r} defines no @workflow.defn class")
    replayer = Replayer(workflows=workflows)
    for path in files:
        history = WorkflowHistory.from_file(path)
        try:
            anyio.run(replayer.replay_workflow, history)
        except NondeterminismError as exc:
            fail(f"{path}: nondeterminism: {exc}")
        except ActivationFailed as exc:
            cause = exc.__cause__
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            fail(f"{path}: workflow code failed during replay: {exc}{detail}")
        stdout.print(f"{path}: replayed {len(history.events)} events, no nondeterminism")
