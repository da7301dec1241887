"""What the workflow-task path does differently for updates (engine/updates.py)."""

from __future__ import annotations

from engine import events as ev
from engine.updates import UpdateRequest


def split_update(event: ev.Event) -> tuple[list[ev.Event], list[UpdateRequest]]:
    """The event a workflow task carries, as the machine's inputs and updates: an
    update request (WorkflowExecutionUpdateAdmitted) is not a history event, it is
    numbered as the event that would come next and runs with no input."""
    if isinstance(event, ev.WorkflowExecutionUpdateAdmitted):
        return [], [UpdateRequest(event.update_id, event.name, event.input)]
    return [event], []
