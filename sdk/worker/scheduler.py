"""A worker's scheduler loop: fires the namespace's schedules that are due
(engine/schedules.py explains why each fire starts exactly one workflow).

Every worker runs it, whatever its task queue: a schedule fires as long as any worker
of the namespace lives. Each pass asks every shard which schedules are due (a read-only
call per shard, all in one round trip, on the server's clock), then takes each due schedule's fires
one step at a time: read its state, read whether its running workflows still run,
decide (engine/schedule_policy.py), write the step fenced by the state's seq, and start
the workflow the step recorded as pending.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog
from redis.exceptions import ResponseError

from engine.errors import RedurableError
from engine.schedule_policy import ScheduleRecord, decide, workflow_id_of
from engine.schedules import ScheduleNotFoundError, ScheduleStore
from engine.store import Store

log = structlog.get_logger("redurable.scheduler")

#: The longest sleep between two passes: a schedule created, triggered or unpaused by a
#: client is seen within this.
MAX_WAIT_S = 1.0
#: Due schedules taken per shard per pass.
DUE_LIMIT = 100
#: Steps of one schedule per pass (a long catch-up goes on in the next pass, so one
#: schedule does not starve the others).
MAX_STEPS = 50


class Scheduler:
    def __init__(self, store: Store, *, max_wait: float = MAX_WAIT_S) -> None:
        self.schedules = ScheduleStore(store)
        self.max_wait = max_wait
        #: Fires this worker started (a figure for tests and scripts).
        self.started = 0

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                wait = await self.run_once()
            except ResponseError as exc:
                # An error reply (not a lost connection: the worker's guard retries
                # those) must not stop the worker's other loops.
                log.warning("scheduler_pass_failed", error=str(exc))
                wait = self.max_wait
            await anyio.sleep(wait)

    async def run_once(self) -> float:
        """One pass over every shard; returns how long to sleep until the next."""
        wait = self.max_wait
        for now, next_score, due in await self.schedules.due(DUE_LIMIT):
            for schedule_id in due:
                try:
                    await self.take_fires(schedule_id)
                except ScheduleNotFoundError:
                    pass  # deleted meanwhile
                except (RedurableError, ResponseError, ValueError, KeyError) as exc:
                    # A schedule that cannot fire (its workflow's start refused, a hash
                    # edited by hand, ...) must not stop the worker or the other schedules.
                    log.warning("schedule_fire_failed", schedule_id=schedule_id, error=str(exc))
            if len(due) >= DUE_LIMIT:
                wait = 0.0
            elif next_score is not None:
                wait = min(wait, max(0.0, (next_score - now) / 1000 + 0.002))
        return wait

    async def take_fires(self, schedule_id: str) -> None:
        """Take the schedule's due fires, one fenced step at a time."""
        for _ in range(MAX_STEPS):
            rec = await self.schedules.read(schedule_id)
            now = await self.schedules.server_ms()
            if rec.pending is not None:
                if rec.pending.lease_ms > now:
                    return  # another worker is starting it
                await self._finish(rec, rec.pending.fire_ms, rec.pending.workflow_id)
                continue
            closed = await self.schedules.closed_of(rec.running)
            step = decide(rec, now, closed)
            await self.schedules.stop_others(step, f"schedule {schedule_id!r}: overlap policy")
            status = await self.schedules.advance(rec, step)
            if status in ("stale", "pending"):
                continue
            if step.start is not None:
                await self._finish(rec, step.start, workflow_id_of(rec.action["id"], step.start))
            elif not step.fired:
                return

    async def _finish(self, rec: ScheduleRecord, fire_ms: int, workflow_id: str) -> None:
        run_id = await self.schedules.start_fire(rec, fire_ms, workflow_id)
        if await self.schedules.started(rec.schedule_id, fire_ms, workflow_id, run_id):
            self.started += 1
            log.info("schedule_fired", schedule_id=rec.schedule_id, workflow_id=workflow_id)
