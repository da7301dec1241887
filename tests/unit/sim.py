"""A history simulator for replay-machine tests: no Redis.

`Sim` plays the part of the Redis Functions: it appends input events, runs the live
activation on a machine, and records the `WorkflowTaskCompleted` boundary plus one
event per command, as `rd_wft_complete` does. `replay()` then drives a fresh machine
through the recorded history, as a worker without a cached machine does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from engine import commands as cmd
from engine import events as ev
from engine.codec import MsgpackCodec
from engine.local_activities import LocalActivityOutcome, LocalActivityRequest
from engine.machine import LOGIC_FLAGS, WorkflowMachine
from engine.updates import UpdateRequest
from sdk._definitions import workflow_definition
from sdk.worker.workflow_runner import DefinitionHooks, new_machine

codec = MsgpackCodec()
START_MS = 1_700_000_000_000


def make_machine(
    workflow: type, run_id: str = "run-1", workflow_id: str = "wf-1"
) -> WorkflowMachine:
    return new_machine(workflow_definition(workflow), workflow_id, run_id, "q", codec)


def instance(machine: WorkflowMachine) -> Any:
    """The workflow object the machine's code runs on."""
    return cast(DefinitionHooks, machine.hooks).instance


class Sim:
    """One workflow run: a machine kept live (as in the sticky cache) and its history."""

    def __init__(self, workflow: type, *args: Any, run_id: str = "run-1") -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.now_ms = START_MS
        self.events: list[ev.Event] = []
        self.machine = make_machine(workflow, run_id)
        self._fed = 0
        self.add(
            ev.WorkflowExecutionStarted,
            workflow_type=workflow_definition(workflow).name,
            task_queue="q",
            input=codec.encode(list(args)),
            run_id=run_id,
        )

    @property
    def instance(self) -> Any:
        return instance(self.machine)

    def add(self, event_type: type[ev.Event], **attrs: Any) -> ev.Event:
        """Append one event (an input, or what the Lua writes for a command)."""
        self.now_ms += 7
        event = event_type(event_id=len(self.events) + 1, timestamp=self.now_ms, **attrs)
        self.events.append(event)
        return event

    # --- inputs -----------------------------------------------------------------------
    def complete_activity(self, seq: int, value: Any, attempt: int = 1) -> None:
        self.add(
            ev.ActivityTaskCompleted, activity_id=seq, result=codec.encode(value), attempt=attempt
        )

    def fail_activity(self, seq: int, failure: dict[str, Any], attempt: int = 1) -> None:
        self.add(ev.ActivityTaskFailed, activity_id=seq, failure=failure, attempt=attempt)

    def fire_timer(self, seq: int) -> None:
        self.add(ev.TimerFired, timer_id=seq)

    def signal(self, name: str, *args: Any) -> None:
        self.add(ev.WorkflowExecutionSignaled, signal_name=name, input=codec.encode(list(args)))

    def cancel(self, reason: str = "") -> None:
        self.add(ev.WorkflowExecutionCancelRequested, reason=reason)

    # --- one workflow task ------------------------------------------------------------
    def activate(
        self,
        *,
        drop_close: bool = False,
        flags: str | None = None,
        local: Callable[[LocalActivityRequest], LocalActivityOutcome] | None = None,
        updates: Sequence[UpdateRequest] = (),
    ) -> list[cmd.Command]:
        """Run the live activation over the unseen events and record its commands.
        `drop_close` plays rd_wft_complete when new events had arrived: the close
        command is not written. `flags` overrides the replay behaviour flags recorded
        (as an older engine would have written them); the live run uses the current.
        `local` runs the local activities the code asks for, as the worker does.
        `updates` are the update requests the task hands the machine; an activation
        with no input that only rejects updates writes nothing, as rd_wft_complete."""
        inputs = self.events[self._fed :]
        commands = self.machine.activate(inputs, self.now_ms, updates)
        if commands and not inputs and all(isinstance(c, cmd.RejectUpdate) for c in commands):
            return commands
        while requests := self.machine.local_requests():
            assert local is not None, f"the code asked for local activities {requests}"
            commands = self.machine.resolve_local_activities([local(r) for r in requests])
        dropped = drop_close and any(isinstance(c, cmd.CLOSE_COMMANDS) for c in commands)
        # As the worker does: record the time the code saw, which never goes back.
        self.add(
            ev.WorkflowTaskCompleted,
            worker="sim",
            now=self.machine.now_ms,
            flags=LOGIC_FLAGS if flags is None else flags,
            close_dropped=int(dropped),
            signals_dropped=cmd.dropped_signals_note(commands),
        )
        for command in commands:
            if isinstance(command, cmd.NOTE_COMMANDS):
                continue
            if drop_close and isinstance(command, cmd.CLOSE_COMMANDS):
                continue
            event_type, attrs = cmd.to_event(command)
            self.add(event_type, **attrs)
            if isinstance(command, cmd.CLOSE_COMMANDS):
                break
        self.machine.committed(self.events[-1].event_id)
        self._fed = len(self.events)
        return commands


def replay(
    workflow: type, events: list[ev.Event], run_id: str = "run-1"
) -> tuple[WorkflowMachine, list[cmd.Command]]:
    """A fresh machine through the whole history; returns it and its live commands."""
    machine = make_machine(workflow, run_id)
    now = events[-1].timestamp if events else START_MS
    commands = machine.activate(events, now)
    return machine, commands
