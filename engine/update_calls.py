"""The client's update transitions (engine/lua/15_updates.lua): admit an update or read
the state of a known one. One FCALL each, on keys of the workflow's shard."""

from __future__ import annotations

from engine.calls import Call, text_of, unwrap
from engine.errors import HistoryLimitError, WorkflowNotFoundError, WorkflowNotRunningError
from engine.status import WorkflowExecutionStatus
from engine.store import Store
from engine.updates import UpdateState, parse_state


async def admit_update(
    store: Store, workflow_id: str, run_id: str, update_id: str, name: str, payload: bytes
) -> UpdateState:
    """Admit the update (a workflow task takes it), or, for an id the workflow already
    has, answer its state without applying anything. Raises WorkflowNotFoundError, or
    WorkflowNotRunningError for a closed run (Temporal raises an RPCError there)."""
    keys = store.keys
    prefix = keys.shard_prefix(keys.shard(workflow_id))
    reply = unwrap(await store.call(Call(
        "rd_update",
        [keys.workflow(workflow_id), keys.history(workflow_id), keys.buffer(workflow_id),
         keys.updates(workflow_id), keys.update_inbox(workflow_id)],
        [prefix, workflow_id, run_id, update_id, name, payload],
    )))
    status = text_of(reply[0])
    if status == "not_found":
        raise WorkflowNotFoundError(workflow_id)
    if status == "not_running":
        raise WorkflowNotRunningError(workflow_id, WorkflowExecutionStatus.parse(reply[1]))
    if status == "history_limit":
        raise HistoryLimitError(f"workflow {workflow_id!r}: {text_of(reply[1])}")
    return parse_state(reply[1:])


async def read_update(store: Store, workflow_id: str, update_id: str) -> UpdateState | None:
    """The update's state and its run's status; None for an id the workflow never had."""
    keys = store.keys
    reply = unwrap(await store.call(Call(
        "rd_update_state", [keys.workflow(workflow_id), keys.updates(workflow_id)],
        [update_id])))
    return parse_state(reply) if reply else None
