"""The task token of an activity attempt: what `activity.info().task_token` hands out and
`client.get_async_activity_handle(task_token=...)` takes back. Opaque bytes to users; it
names the attempt (workflow id, run id, activity id, attempt), so a completion made with
it lands only while that attempt is the activity's current one (fencing, as a worker's)."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from engine.errors import InvalidArgumentError
from engine.validate import check_id

#: First item of the packed list: a later format can tell its tokens from these.
VERSION = 1
#: A token is small; a big blob is not one (checked before unpacking it).
MAX_TOKEN_BYTES = 2048


@dataclass(frozen=True)
class ActivityRef:
    """One activity of a run; `attempt` None means whichever attempt is current (the
    workflow_id + run_id + activity_id form of an async activity handle)."""

    workflow_id: str
    run_id: str
    activity_id: int
    attempt: int | None = None

    def encode(self) -> bytes:
        if self.attempt is None:
            raise InvalidArgumentError("a task token names one attempt")
        return encode_task_token(self.workflow_id, self.run_id, self.activity_id, self.attempt)


def encode_task_token(workflow_id: str, run_id: str, activity_id: int, attempt: int) -> bytes:
    """ActivityRef(...).encode() without making the ActivityRef (each attempt's token)."""
    packed: bytes = msgpack.packb([VERSION, workflow_id, run_id, activity_id, attempt])
    return packed


def decode_task_token(token: bytes) -> ActivityRef:
    """The attempt a task token names; a clear InvalidArgumentError for anything else."""
    if not isinstance(token, bytes | bytearray) or not token or len(token) > MAX_TOKEN_BYTES:
        raise InvalidArgumentError("not a task token (bytes from activity.info().task_token)")
    try:
        items = msgpack.unpackb(bytes(token), raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidArgumentError(f"not a task token: {exc}") from None
    if (
        not isinstance(items, list)
        or len(items) != 5
        or items[0] != VERSION
        or not all(isinstance(v, str) for v in items[1:3])
        or not all(isinstance(v, int) and v > 0 for v in items[3:5])
    ):
        raise InvalidArgumentError("not a task token (bytes from activity.info().task_token)")
    _, workflow_id, run_id, activity_id, attempt = items
    return ActivityRef(check_id(workflow_id), check_id(run_id, "run id"), activity_id, attempt)
