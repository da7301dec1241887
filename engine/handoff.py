"""The engine side of the cross-shard hand-off (docs/design-notes.md "Cross-shard
hand-off"): the shards' outbox streams, and the call that applies one entry in its
target's shard. The Lua side is engine/lua/85_handoff.lua; the worker loop that reads
the outboxes is sdk/worker/handoff.py.

An entry is general: `kind`, `target` (a workflow id), `request_id`, and the kind's
own fields; whatever adds one (a workflow task completion, a run's close, and later
schedules) needs no code here, only a handler of its kind in the Lua library."""

from __future__ import annotations

from collections.abc import Mapping

from redis.exceptions import ResponseError

from engine.calls import Arg, Call, TaskRef, due_in_slot
from engine.keys import GROUP, Keys
from engine.limits import REQUEST_ID_WINDOW_MS
from engine.store import Store

#: Entry fields every kind has.
KIND, TARGET, REQUEST_ID = b"kind", b"target", b"request_id"


class MalformedEntryError(ValueError):
    """An outbox entry without a target or kind: it can never be applied."""


def outbox_streams(keys: Keys) -> list[str]:
    return [keys.outbox(shard) for shard in range(keys.shards)]


async def ensure_outbox_groups(store: Store) -> None:
    """The consumer group of every shard's outbox (idempotent). Created at id 0, so
    entries added before the first worker came are applied too."""
    pipe = store.redis.pipeline(transaction=False)
    for stream in outbox_streams(store.keys):
        pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for result in await pipe.execute(raise_on_error=False):
        if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
            raise result


#: Call.timer_due_in of rd_handoff: an entry may add timers in its target's shard (a
#: child's timeouts, the cron follow-up of a run it terminated).
handoff_due_in = due_in_slot(2)


def apply_call(keys: Keys, fields: Mapping[bytes, bytes]) -> Call:
    """rd_handoff for one entry: the target workflow's keys, in its own shard."""
    raw_target = fields.get(TARGET)
    if not raw_target or not fields.get(KIND):
        raise MalformedEntryError(f"hand-off entry without target or kind: {dict(fields)!r}")
    target = raw_target.decode()
    shard = keys.shard(target)
    args: list[Arg] = [keys.shard_prefix(shard), target, REQUEST_ID_WINDOW_MS]
    for name, value in fields.items():
        args += [name, value]
    return Call(
        "rd_handoff",
        [keys.workflow(target), keys.history(target), keys.buffer(target), keys.requests(shard)],
        args,
        timer_due_in=handoff_due_in,
    )


def ack_call(stream: str, msg_id: str) -> Call:
    return Call("rd_handoff_ack", [stream], [msg_id], TaskRef(stream, msg_id))


def shard_of_outbox(keys: Keys, stream: str) -> int:
    return outbox_streams(keys).index(stream)
