"""Golden histories: recorded by `scripts/record_golden.py` from real runs, replayed by
`tests/unit/test_golden.py` with the current code, so a change that breaks the replay of
old histories fails a test (like Temporal's tests/worker/test_replayer_*.json).

A golden file is JSON: what was run, how it ended, and every history event as its
stream-entry fields (`engine.events.encode_event`), user payloads as
`{"base64": "..."}` (they are MessagePack bytes).
"""

from __future__ import annotations

import base64
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import events as ev

GOLDEN_DIR = Path(__file__).parent
FORMAT = 1


def event_to_json(event: ev.Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in ev.encode_event(event).items():
        if isinstance(value, bytes):
            out[name] = {"base64": base64.b64encode(value).decode()}
        else:
            out[name] = value
    return out


def event_from_json(doc: dict[str, Any]) -> ev.Event:
    fields: dict[bytes, bytes] = {}
    for name, value in doc.items():
        if isinstance(value, dict):
            fields[name.encode()] = base64.b64decode(value["base64"])
        else:
            fields[name.encode()] = str(value).encode()
    return ev.decode_event(fields)


@dataclass(frozen=True)
class Golden:
    name: str
    description: str
    #: "module:Class" of the workflow that was run.
    workflow: str
    workflow_id: str
    run_id: str
    status: str
    #: The workflow's result (COMPLETED), else None.
    result: Any
    #: The failure document of the close event (FAILED), else None.
    failure: dict[str, Any] | None
    events: list[ev.Event]

    def workflow_class(self) -> type:
        module, _, name = self.workflow.partition(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "workflow": self.workflow,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "result": self.result,
            "failure": self.failure,
            "events": [event_to_json(e) for e in self.events],
        }


def load(path: Path) -> Golden:
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown golden format {doc.get('format')!r}")
    return Golden(
        name=doc["name"],
        description=doc["description"],
        workflow=doc["workflow"],
        workflow_id=doc["workflow_id"],
        run_id=doc["run_id"],
        status=doc["status"],
        result=doc["result"],
        failure=doc["failure"],
        events=[event_from_json(e) for e in doc["events"]],
    )


def dump(golden: Golden, path: Path) -> None:
    path.write_text(json.dumps(golden.to_json(), indent=1) + "\n")


def all_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.json"))
