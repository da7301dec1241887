"""A run's history as a whole (temporalio's `WorkflowHistory`): what awaiting
`handle.fetch_history()` gives, what `Replayer` replays, and its JSON form (the one
`redurable workflow show -o json` prints)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgumentError
from sdk._present import event_json, to_json
from sdk.client.types import HistoryEvent


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
        return WorkflowHistory(workflow_id or "replay", [event_from_json(e) for e in doc])

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

    def to_json(self) -> str:
        """The events as `redurable workflow show -o json` prints them."""
        return to_json([event_json(e) for e in self.events])


class HistoryFetch:
    """What `handle.fetch_history()` returns: iterate it (`async for`) for the events as
    they are read, page by page, or await it for the whole `WorkflowHistory`, as
    temporalio's `await handle.fetch_history()`."""

    def __init__(
        self, workflow_id: str, events: Callable[[], AsyncIterator[HistoryEvent]]
    ) -> None:
        self.workflow_id = workflow_id
        self._events = events

    def __aiter__(self) -> AsyncIterator[HistoryEvent]:
        return self._events()

    def __await__(self) -> Generator[Any, None, WorkflowHistory]:
        return self._collect().__await__()

    async def _collect(self) -> WorkflowHistory:
        return WorkflowHistory(self.workflow_id, [e async for e in self._events()])


def event_from_json(doc: Any) -> HistoryEvent:
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
