"""Workflows whose recorded histories are golden files (besides sdk.examples.order).

Changing what one of these decides breaks the replay of its golden file: that is the
point. Make such a change a new workflow (or re-record, knowingly).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sdk import ActivityError, activity, workflow

T = timedelta(seconds=10)


@activity.defn
async def invite(host: str, n: int) -> str:
    return f"{host}-invite-{n}"


@activity.defn
async def tidy_up(reason: str) -> str:
    return f"tidied: {reason}"


@activity.defn
async def wait_forever() -> None:
    while True:
        await asyncio.sleep(0.05)
        activity.heartbeat()
        if activity.is_cancelled():
            return


@activity.defn
async def step(name: str) -> str:
    return name.upper()


ACTIVITIES = [invite, tidy_up, wait_forever, step]


@workflow.defn
class Party:
    """asyncio.gather over activities and a timer, signals, wait_condition both won by
    the condition (timer cancelled) and by the timeout (timer fired), now/random/uuid."""

    def __init__(self) -> None:
        self.guests: list[str] = []
        self.doors_closed = False
        self.stage = "inviting"

    @workflow.signal
    def arrive(self, name: str) -> None:
        self.guests.append(name)

    @workflow.signal
    def close_doors(self) -> None:
        self.doors_closed = True

    @workflow.query
    def guest_list(self) -> list[str]:
        return list(self.guests)

    @workflow.query
    def current_stage(self) -> str:
        return self.stage

    @workflow.run
    async def run(self, host: str) -> dict[str, Any]:
        started = workflow.now().isoformat()
        *invites, _ = await asyncio.gather(
            *(
                workflow.execute_activity(invite, host, n, start_to_close_timeout=T)
                for n in range(3)
            ),
            workflow.sleep(0.05),
        )
        token = str(workflow.uuid4())
        lucky = workflow.random().randint(1, 100)
        self.stage = "waiting"
        all_arrived = await workflow.wait_condition(
            lambda: len(self.guests) >= 3, timeout=timedelta(seconds=30)
        )
        doors = await workflow.wait_condition(lambda: self.doors_closed, timeout=0.1)
        await workflow.sleep(0.05)
        return {
            "started": started,
            "invites": invites,
            "guests": self.guests,
            "all_arrived": all_arrived,
            "doors_closed": doors,
            "token": token,
            "lucky": lucky,
        }


@workflow.defn
class CancelWithCleanup:
    """Cancelled while an activity runs: catches the cancellation, runs a cleanup
    activity, and ends cancelled."""

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                wait_forever, start_to_close_timeout=T, heartbeat_timeout=timedelta(seconds=5)
            )
        except (asyncio.CancelledError, ActivityError):
            # CancelledError in activations recorded before replay flag 3, since then
            # the activity's ActivityError(cause=CancelledError).
            await workflow.execute_activity(tidy_up, "cancelled", start_to_close_timeout=T)
            raise
        return "not cancelled"


@workflow.defn(name="TwoSteps")
class TwoSteps:
    """The base of the non-determinism golden file (see TwoStepsChanged in the test)."""

    @workflow.run
    async def run(self) -> str:
        first: str = await workflow.execute_activity(step, "first", start_to_close_timeout=T)
        await workflow.sleep(0.05)
        second: str = await workflow.execute_activity(step, "second", start_to_close_timeout=T)
        return first + " " + second
