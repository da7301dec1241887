"""Run chains: the closed runs of a workflow (continue-as-new, cron) kept readable by
run id, and the cron fires a worker turns into the chain's next run.

A closed run's state and history live under `Keys.closed_run` / `closed_run_history`
for the namespace's run retention (engine/lua/15_run_chain.lua archives them in the
transition that starts the next run, and they expire on their own). The retention is a
namespace setting in `<prefix>:config` (`run_retention_ms`), written into each run's
state at start, so a chain keeps the retention it started with."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from engine import events as ev
from engine.calls import Call, due_in_slot, text_of
from engine.cron import check_cron_schedule, next_fire_ms
from engine.errors import InvalidArgumentError
from engine.keys import Keys
from engine.task_replies import decode_entries

#: The field of `<prefix>:config` that holds the namespace's run retention (ms).
RETENTION_FIELD = "run_retention_ms"


def check_run_id(run_id: str) -> str:
    """A run id as the engine makes them (hex, dashes allowed for uuids): anything else
    would name another key under `run:`."""
    if not run_id or len(run_id) > 64 or not all(c.isalnum() or c == "-" for c in run_id):
        raise InvalidArgumentError(f"not a run id: {run_id!r}")
    return run_id


@dataclass(frozen=True)
class CronFire:
    """A cron run that closed: the worker starts the chain's next run (rd_cron_next)."""

    workflow_id: str
    run_id: str
    cron_schedule: str
    #: When the run closed (ms, server clock): the next run waits for the first cron
    #: time after it.
    close_ms: int

    @classmethod
    def parse(cls, row: Sequence[Any]) -> CronFire:
        return cls(text_of(row[0]), text_of(row[1]), text_of(row[2]), int(text_of(row[3])))


def cron_fires(timer_reply: Sequence[Any]) -> list[CronFire]:
    """The cron fires of one shard's rd_fire_timers reply (its 4th element)."""
    if len(timer_reply) < 4:
        return []
    return [CronFire.parse(row) for row in timer_reply[3]]


#: Call.timer_due_in of rd_cron_next.
cron_next_due_in = due_in_slot(2)


def cron_next_call(keys: Keys, fire: CronFire) -> Call:
    wf = fire.workflow_id
    return Call(
        "rd_cron_next",
        [keys.workflow(wf), keys.history(wf), keys.buffer(wf)],
        [keys.shard_prefix(keys.shard(wf)), wf, fire.run_id, uuid.uuid4().hex,
         next_fire_ms(fire.cron_schedule, fire.close_ms)],
        # The new run's first task waits for the next cron time: often far out.
        timer_due_in=cron_next_due_in,
    )


async def read_closed_run(
    redis: Redis, keys: Keys, workflow_id: str, run_id: str
) -> dict[str, bytes]:
    """The state of closed run `run_id` as it closed ({} when not kept or expired)."""
    raw: dict[Any, Any] = await redis.hgetall(keys.closed_run(workflow_id, check_run_id(run_id)))
    return {text_of(k): bytes(v) for k, v in raw.items()}


async def read_closed_history(
    redis: Redis, keys: Keys, run_id: str, workflow_id: str,
    after: bytes | None = None, count: int | None = None,
) -> list[tuple[bytes, ev.Event]]:
    """A page of the history of closed run `run_id` (as Store.read_history)."""
    start = b"(" + after if after else "-"
    raw: Any = await redis.xrange(keys.closed_run_history(workflow_id, check_run_id(run_id)),
                                  start, "+", count=count)
    return decode_entries(raw)


async def configure_retention(
    redis: Redis, keys: Keys, retention: timedelta | float | None
) -> int | None:
    """Store the namespace's run retention when given (0: keep no closed run), and
    return the one in force (None: the engine's default)."""
    if retention is not None:
        seconds = retention.total_seconds() if isinstance(retention, timedelta) else retention
        if isinstance(retention, bool) or not 0 <= seconds < 10 * 365 * 86400:
            raise InvalidArgumentError(
                f"run_retention must be 0 or more seconds, not {retention!r}")
        await redis.hset(keys.config(), RETENTION_FIELD, str(round(seconds * 1000)))
    raw = await redis.hget(keys.config(), RETENTION_FIELD)
    return None if raw is None else int(raw)


def cron_start_options(cron_schedule: str, now_ms: int | None = None) -> dict[str, Any]:
    """StartOptions fields of a cron start: the checked schedule, and the wait of the
    first run for the first cron time (on this process's clock; later runs use the
    server's). {} without a schedule."""
    if not cron_schedule:
        return {}
    schedule = check_cron_schedule(cron_schedule)
    now = round(time.time() * 1000) if now_ms is None else now_ms
    return {"cron_schedule": schedule, "first_task_backoff_ms": next_fire_ms(schedule, now) - now}


def cron_goes_on(status: str, failure: bytes | None) -> bool:
    """Does a cron chain go on after its run closed with `status`? Success, failure and
    the run's own timeout go on; terminate, cancel and the chain's execution timeout end
    it (engine/lua/15_run_chain.lua decides the same)."""
    if status in ("COMPLETED", "FAILED"):
        return True
    return status == "TIMED_OUT" and b'"timeout_type":"execution"' not in (failure or b"")
