"""A worker's scheduler loop: fires the namespace's schedules that are due
(engine/schedules.py explains why each fire starts exactly one workflow).

Every worker runs it, whatever its task queue: a schedule fires as long as any worker
of the namespace lives. Each pass asks every shard which schedules are due (a read-only
call per shard, all in one round trip, on the server's clock), then takes each due schedule's fires
one step at a time: read its state, read whether its running workflows still run,
decide (engine/schedule_policy.py), write the step fenced by the state's seq, and start
the workflow the step recorded as pending. The workers of a task queue share the passes
when nothing is due soon (PASSES): an idle fleet scans about four times a second in all.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio
import structlog
from redis.exceptions import ResponseError

from engine.errors import RedurableError
from engine.schedule_policy import ScheduleRecord, decide, workflow_id_of
from engine.schedules import ScheduleNotFoundError, ScheduleStore
from engine.store import Store
from sdk.worker.fleet import fleet_share

log = structlog.get_logger("redurable.scheduler")

#: The longest sleep between two passes of a lone worker: a schedule created, triggered
#: or unpaused by a client is seen within this.
MAX_WAIT_S = 1.0
#: How many passes per MAX_WAIT_S a fleet makes together when nothing is due soon: each
#: of K workers waits MAX_WAIT_S * K / PASSES (at random phases, as the death watch of
#: sdk/worker/presence.py does), so an idle fleet costs Redis the same whatever its
#: size. The passes of a large fleet come at about random moments (a Poisson process
#: of PASSES per MAX_WAIT_S): a schedule created by a client is seen within a quarter
#: of a second on average and within MAX_WAIT_S but for e**-PASSES (~2%) of the time.
#: A due time that a pass saw wakes its worker at that time whatever the share.
PASSES = 4
#: Due schedules taken per shard per pass.
DUE_LIMIT = 100
#: Steps of one schedule per pass (a long catch-up goes on in the next pass, so one
#: schedule does not starve the others).
MAX_STEPS = 50


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        max_wait: float = MAX_WAIT_S,
        fleet_size: Callable[[], int] | None = None,
    ) -> None:
        self.schedules = ScheduleStore(store)
        self.max_wait = max_wait
        #: The live workers that scan too (this one included), as far as we know: 1
        #: (scan every max_wait) when unknown.
        self._fleet_size = fleet_size
        #: Random phases for the shared scan (module random is the workflows' concern).
        self._jitter = random.Random()
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
                wait = self.idle_wait()
            await anyio.sleep(wait)

    async def run_once(self) -> float:
        """One pass over every shard; returns how long to sleep until the next."""
        wait = self.idle_wait()
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

    def idle_wait(self) -> float:
        """The sleep after a pass that saw nothing due sooner: this worker's share of
        the fleet's passes (see PASSES), max_wait for a lone worker or two."""
        fleet = self._fleet_size() if self._fleet_size is not None else 1
        return fleet_share(self.max_wait, fleet, PASSES, self._jitter.random())

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
