"""A task as a worker holds it: one entry of a task stream, and the check that it can be
processed at all (a malformed entry goes to the dead letters at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

Fields = dict[bytes, bytes]

#: Fields a task entry must have, by the kind of stream it is on.
_WF_TASK_FIELDS = (b"workflow_id", b"run_id", b"epoch")
_ACT_TASK_FIELDS = (b"workflow_id", b"run_id", b"activity_id", b"attempt", b"activity_type")
_INT_TASK_FIELDS = frozenset({b"activity_id", b"attempt"})


@dataclass
class TaskEntry:
    stream: str
    msg_id: str
    fields: Fields
    #: Set when a speculative completion was refused: start it the normal way.
    no_speculation: bool = False
    #: Claimed from a dead worker (counted in TaskPlumbing.claimed_in_flight while it runs).
    claimed: bool = False
    #: Fields already decoded: a workflow task asks for its ids about ten times.
    _text: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def get(self, name: str) -> str:
        text = self._text.get(name)
        if text is None:
            text = self._text[name] = self.fields[name.encode()].decode()
        return text


def malformed(workflow_task: bool, fields: Fields) -> str | None:
    """Why a workflow (or activity) task entry cannot be processed (fields missing, not
    text, not a number), or None."""
    required = _WF_TASK_FIELDS if workflow_task else _ACT_TASK_FIELDS
    for name in required:
        value = fields.get(name)
        if value is None:
            return f"malformed task entry: no {name.decode()!r} field"
        try:
            text = value.decode()
        except UnicodeDecodeError:
            return f"malformed task entry: field {name.decode()!r} is not UTF-8 text"
        if name in _INT_TASK_FIELDS and not text.isdigit():
            return f"malformed task entry: field {name.decode()!r} is not a number"
    return None
