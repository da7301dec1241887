"""The replay machine's update side (Temporal's workflow updates), and the wire forms
the worker and the client share with engine/lua/15_updates.lua.

- Live, a workflow task hands the machine the updates admitted for it (`UpdateRequest`).
  After the activation's input events, each one is validated (the validator may not
  decide anything) and then accepted (`AcceptUpdate`, recorded as
  WorkflowExecutionUpdateAccepted) with its handler started as a task of the workflow,
  or rejected (`RejectUpdate`: a note the completion stores with the update's state;
  nothing is written to history). When the handler ends, `CompleteUpdate` records its
  result or failure (WorkflowExecutionUpdateCompleted).
- Replayed, the accepted events among an activation's recorded commands are the
  updates it ran: they are applied at the same point (after the inputs), without the
  validator, so the handler runs again and the commands come out in the same order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from engine import commands as cmd
from engine import events as ev
from engine.codec import PayloadCodec
from engine.errors import CodecKeyError, FailureError, PayloadError, to_failure
from engine.loop import DeterministicLoop


@dataclass(frozen=True)
class UpdateRequest:
    update_id: str
    name: str
    input: bytes


class UpdateInputError(Exception):
    """The workflow cannot take this update: no handler has its name, or its arguments
    do not fit the handler. The update is rejected with this reason."""


#: Runs the validator (raises to reject), and starts the handler (returns what it
#: returned, as the codec's plain data).
UpdateCalls = tuple[Callable[[], None] | None, Callable[[], Awaitable[Any]]]


@runtime_checkable
class UpdateHooks(Protocol):
    """What the machine needs from a workflow definition to run updates (the sdk's
    DefinitionHooks)."""

    def update(self, name: str, args: list[Any]) -> UpdateCalls: ...


class WorkflowUpdateStage(IntEnum):
    """Where an update is (temporalio's WorkflowUpdateStage numbers)."""

    ADMITTED = 1
    ACCEPTED = 2
    COMPLETED = 3


@dataclass(frozen=True)
class UpdateState:
    """An update as its workflow's shard keeps it (rd_update, rd_update_state)."""

    stage: WorkflowUpdateStage
    #: "" until completed, then "success", "failure" (the handler failed) or "rejected".
    outcome: str
    #: The result payload (success) or the failure document (JSON text).
    value: bytes
    run_id: str
    #: The status of the workflow's current run, and its run id ("" unknown).
    run_status: str = ""
    current_run_id: str = ""

    @property
    def run_closed(self) -> bool:
        """The update's run ended (or was replaced) before the update completed."""
        return bool(self.run_status) and (
            self.run_status != "RUNNING" or self.current_run_id != self.run_id
        )

    @property
    def failure(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.value)
        return loaded


_STAGES = {"admitted": WorkflowUpdateStage.ADMITTED,
           "accepted": WorkflowUpdateStage.ACCEPTED,
           "completed": WorkflowUpdateStage.COMPLETED}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_state(parts: Sequence[Any]) -> UpdateState:
    """stage, outcome, value, run_id[, run status, current run id] as the Lua answers."""
    value = parts[2]
    return UpdateState(
        stage=_STAGES[_text(parts[0])],
        outcome=_text(parts[1]),
        value=value if isinstance(value, bytes) else str(value).encode(),
        run_id=_text(parts[3]),
        run_status=_text(parts[4]) if len(parts) > 4 else "",
        current_run_id=_text(parts[5]) if len(parts) > 5 else "",
    )


def parse_requests(flat: Sequence[Any]) -> list[UpdateRequest]:
    """rd_wft_start's waiting updates: update_id, name, input, ..."""
    return [
        UpdateRequest(_text(flat[i]), _text(flat[i + 1]), bytes(flat[i + 2]))
        for i in range(0, len(flat) - 2, 3)
    ]


def rejection_args(command: cmd.RejectUpdate) -> list[Any]:
    """A rejection in rd_wft_complete's command list (a kind of its own, no event)."""
    return ["UpdateRejected", 2, "update_id", command.update_id,
            "failure", json.dumps(command.failure, separators=(",", ":"))]


class UpdateMixin:
    """The replay machine's update side (see the module doc)."""

    _commands: list[cmd.Command]
    _handlers: list[asyncio.Task[Any]]
    replaying: bool
    loop: DeterministicLoop
    codec: PayloadCodec
    hooks: Any
    #: Updates to apply after this activation's inputs, and whether to validate them
    #: (live: yes; replayed from WorkflowExecutionUpdateAccepted: no).
    _update_inbox: list[tuple[UpdateRequest, bool]]
    #: The id of the update whose handler is being bound (sdk interceptors read it).
    applying_update_id: str = ""

    def _drain(self) -> None: ...  # the machine's

    def _note_accepted_updates(self, recorded: Sequence[ev.Event]) -> None:
        """Before an activation is replayed: the updates it accepted, to run again."""
        self._update_inbox = [
            (UpdateRequest(e.update_id, e.name, e.input), False)
            for e in recorded
            if isinstance(e, ev.WorkflowExecutionUpdateAccepted)
        ]

    def _apply_updates(self) -> None:
        inbox, self._update_inbox = self._update_inbox, []
        for request, validate in inbox:
            self._apply_update(request, validate)
            self._drain()

    def _apply_update(self, request: UpdateRequest, validate: bool) -> None:
        try:
            args = self.codec.decode(request.input)
            if not isinstance(args, list):
                raise PayloadError("an update's input must encode a list of arguments")
            if not isinstance(self.hooks, UpdateHooks):
                raise UpdateInputError("this workflow takes no updates")
            self.applying_update_id = request.update_id  # for interceptors' HandleUpdateInput
            validator, handler = self.hooks.update(request.name, args)
            if validate and validator is not None:
                decided = len(self._commands)
                validator()
                if len(self._commands) != decided:
                    del self._commands[decided:]
                    raise UpdateInputError(
                        f"the validator of update {request.name!r} may not start "
                        "activities, timers or anything else that is recorded")
        except CodecKeyError:
            raise  # a worker with the codec's key can read it: fail the task, retried
        except Exception as exc:
            if not self.replaying:
                self._commands.append(cmd.RejectUpdate(request.update_id, to_failure(exc)))
            return
        self._commands.append(cmd.AcceptUpdate(request.update_id, request.name, request.input))
        self._handlers.append(self.loop.create_task(
            self._run_update(request.update_id, handler), name=f"update {request.name}"))

    async def _run_update(self, update_id: str, handler: Callable[[], Awaitable[Any]]) -> None:
        # A FailureError (ApplicationError, ...) fails the update: the caller gets
        # WorkflowUpdateFailedError. Any other error escapes and fails the workflow
        # task (a bug: retried until a fixed deploy), as temporalio does.
        try:
            result = self.codec.encode(await handler())
        except (FailureError, PayloadError) as exc:
            self._commands.append(cmd.CompleteUpdate(update_id, failure=to_failure(exc)))
            return
        self._commands.append(cmd.CompleteUpdate(update_id, result))

    def all_handlers_finished(self) -> bool:
        """No signal or update handler of this workflow is still running."""
        return all(task.done() for task in self._handlers)
