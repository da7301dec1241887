"""Replaying recorded histories against workflow code (temporalio's `Replayer`): the
check that a new version of the code still makes the decisions running workflows
recorded, before it is deployed.

A history comes from `handle.fetch_history()`, from `redurable workflow show -o json`
(a file, or its text), or as `WorkflowHistory`. Those forms carry decoded payloads; they
are encoded again with the replayer's codec for the machine (engine/machine.py), which
never compares payloads, only decisions.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine.codec import MsgpackCodec, PayloadCodec
from engine.errors import InvalidArgumentError
from engine.machine import WorkflowMachine
from sdk._definitions import WorkflowDefinition, workflow_definition
from sdk.client.history import HistoryFetch, WorkflowHistory
from sdk.client.types import HistoryEvent
from sdk.worker.workflow_runner import new_machine


@dataclass(frozen=True)
class WorkflowReplayResult:
    history: WorkflowHistory
    #: Why the replay failed (NondeterminismError, or the error the code raised), else None.
    replay_failure: Exception | None = None


@dataclass
class WorkflowReplayResults:
    #: Run id -> its failure, for the histories that did not replay.
    replay_failures: dict[str, Exception] = field(default_factory=dict)


class Replayer:
    """Replays histories with the given workflow classes, as a worker would."""

    def __init__(self, *, workflows: Sequence[type], codec: PayloadCodec | None = None) -> None:
        if not workflows:
            raise InvalidArgumentError("a Replayer needs at least one workflow class")
        self._workflows: dict[str, WorkflowDefinition] = {}
        for cls in workflows:
            definition = workflow_definition(cls)
            self._workflows[definition.name] = definition
        self._codec = codec or MsgpackCodec()

    async def replay_workflow(
        self, history: Any, *, raise_on_replay_failure: bool = True
    ) -> WorkflowReplayResult:
        """Replay one history: a `WorkflowHistory`, the events of `fetch_history()`,
        or a path or JSON text of `workflow show -o json`. Code that decides otherwise
        than the history recorded raises `NondeterminismError` naming the event and the
        command that differ; with `raise_on_replay_failure=False` it is returned."""
        wf_history = await _to_history(history)
        try:
            self._replay(wf_history)
        except Exception as exc:
            if raise_on_replay_failure:
                raise
            return WorkflowReplayResult(wf_history, exc)
        return WorkflowReplayResult(wf_history)

    async def replay_workflows(
        self,
        histories: Iterable[Any] | AsyncIterable[Any],
        *,
        raise_on_replay_failure: bool = True,
    ) -> WorkflowReplayResults:
        """Replay several histories; the first failure is raised unless
        `raise_on_replay_failure=False`, then every failure is collected."""
        results = WorkflowReplayResults()
        if isinstance(histories, AsyncIterable):
            items = [h async for h in histories]
        else:
            items = list(histories)
        for history in items:
            result = await self.replay_workflow(
                history, raise_on_replay_failure=raise_on_replay_failure
            )
            if result.replay_failure is not None:
                results.replay_failures[result.history.run_id] = result.replay_failure
        return results

    def _replay(self, history: WorkflowHistory) -> None:
        events = [self._to_event(e) for e in history.events]
        if not events or not isinstance(events[0], ev.WorkflowExecutionStarted):
            raise InvalidArgumentError(
                "a history starts with WorkflowExecutionStarted (is it a whole run's?)"
            )
        started = events[0]
        definition = self._workflows.get(started.workflow_type)
        if definition is None:
            known = ", ".join(sorted(self._workflows))
            raise InvalidArgumentError(
                f"the history is of workflow type {started.workflow_type!r}; "
                f"this Replayer has {known}"
            )
        machine: WorkflowMachine = new_machine(
            definition,
            history.workflow_id,
            started.run_id,
            started.task_queue,
            self._codec,
            started.attempt,
        )
        # Complete activations only: the trailing inputs of a running workflow have no
        # recorded decisions to check yet.
        machine.replay(events)

    def _to_event(self, event: HistoryEvent) -> ev.Event:
        cls = ev.EVENT_TYPES.get(event.type)
        if cls is None:
            raise InvalidArgumentError(f"event {event.event_id}: unknown type {event.type!r}")
        kinds = ev.field_kinds(cls)
        kwargs: dict[str, Any] = {
            "event_id": event.event_id,
            "timestamp": round(event.timestamp.timestamp() * 1000),
        }
        for name, value in event.attributes.items():
            kind = kinds.get(name)
            if kind is None:
                continue  # an attribute a newer version added: not needed to replay
            if kind == "bytes":
                kwargs[name] = _payload(value, self._codec)
            elif kind == "int":
                kwargs[name] = int(value)
            elif kind == "str":
                kwargs[name] = str(value)
            else:
                kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise InvalidArgumentError(
                f"event {event.event_id} ({event.type}) is incomplete: {exc}"
            ) from None


def _payload(value: Any, codec: PayloadCodec) -> bytes:
    if isinstance(value, bytes):
        return value  # the client could not decode it: it is still the stored payload
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])  # the same, printed as JSON
    return codec.encode(value)


async def _to_history(source: Any) -> WorkflowHistory:
    if isinstance(source, WorkflowHistory):
        return source
    if isinstance(source, HistoryFetch):
        return await source  # handle.fetch_history(): keeps the workflow id
    if isinstance(source, str | os.PathLike):
        text = str(source).lstrip()
        if isinstance(source, str) and text[:1] in ("[", "{"):
            return WorkflowHistory.from_json(None, text)
        return WorkflowHistory.from_file(source)
    if isinstance(source, AsyncIterable):
        events = [e async for e in source]
    elif isinstance(source, Iterable):
        events = list(source)
    else:
        raise InvalidArgumentError(
            f"cannot replay a {type(source).__name__}: pass a WorkflowHistory, the events of "
            "handle.fetch_history(), or a path/JSON text of `redurable workflow show -o json`"
        )
    if events and isinstance(events[0], dict):
        return WorkflowHistory.from_json(None, events)
    if not all(isinstance(e, HistoryEvent) for e in events):
        raise InvalidArgumentError("a history is a sequence of HistoryEvent")
    return WorkflowHistory("replay", events)
