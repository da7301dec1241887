"""The Actions tab's update form: send an update, wait a little for its result."""

from __future__ import annotations

from typing import Any

from engine.errors import WorkflowUpdateFailedError
from engine.updates import WorkflowUpdateStage
from sdk._present import to_json
from sdk.client.handle import WorkflowHandle

#: How long the page waits for a handler that is still running after its acceptance.
RESULT_WAIT_S = 10.0


async def send_update(
    handle: WorkflowHandle, name: str, args: list[Any], update_id: str | None
) -> str:
    """The notice the page shows: the update's result, why it failed, or that it runs."""
    try:
        started = await handle.start_update(
            name, *args, id=update_id, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        try:
            result = await started.result(timeout=RESULT_WAIT_S)
        except TimeoutError:
            return (f"update {name} ({started.id}) accepted; its handler was still running "
                    f"after {RESULT_WAIT_S:g} s")
    except WorkflowUpdateFailedError as exc:
        return f"update {name} failed: {exc.cause}"
    return f"update {name} ({started.id}) returned {to_json(result, indent=None)}"
