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
import json
import os
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.codec import MsgpackCodec, PayloadCodec
from engine.errors import InvalidArgumentError
from engine.machine import WorkflowMachine
from sdk._definitions import WorkflowDefinition, workflow_definition
from sdk.client.types import HistoryEvent
from sdk.worker.workflow_runner import new_machine


@dataclass(frozen=True)
class WorkflowHistory:
    """One run's recorded events (temporalio's `WorkflowHistory`)."""

    workflow_id: str
    events: Sequence[HistoryEvent]

    @property
    def run_id(self) -> str:
        first = self.events[0] if self.events else None
        return str(first.attributes.get("run_id", "")) if first else ""

    @staticmethod
    def from_json(
        workflow_id: str | None, history: str | list[Any] | dict[str, Any]
    ) -> WorkflowHistory:
        """From what `redurable workflow show -o json` prints (a list of events), or a
        document `{"workflow_id": ..., "events": [...]}` holding such a list. Without a
        workflow id (a bare list), the workflow id is "replay"."""
        doc = json.loads(history) if isinstance(history, str) else history
        if isinstance(doc, dict):
            workflow_id = workflow_id or doc.get("workflow_id")
            doc = doc.get("events")
        if not isinstance(doc, list):
            raise InvalidArgumentError(
                "a history in JSON is a list of events (`redurable workflow show -o json`) "
                'or {"workflow_id": ..., "events": [...]}'
            )
        return WorkflowHistory(workflow_id or "replay", [_event_from_json(e) for e in doc])

    @staticmethod
    def from_file(path: str | os.PathLike[str], workflow_id: str | None = None) -> WorkflowHistory:
        """From a file of `redurable workflow show -o json` output; the workflow id
        defaults to the document's, else the file's name without extension."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read history file {path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"history file {path} is not JSON: {exc.msg}") from None
        if isinstance(doc, dict):
            workflow_id = workflow_id or doc.get("workflow_id")
        return WorkflowHistory.from_json(workflow_id or path.stem.split(".")[0], doc)


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


def _event_from_json(doc: Any) -> HistoryEvent:
    try:
        return HistoryEvent(
            event_id=int(doc["event_id"]),
            type=str(doc["type"]),
            timestamp=datetime.fromisoformat(doc["timestamp"]),
            attributes=dict(doc.get("attributes") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"not an event of `redurable workflow show -o json`: {str(doc)[:120]} ({exc})"
        ) from None


async def _to_history(source: Any) -> WorkflowHistory:
    if isinstance(source, WorkflowHistory):
        return source
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
