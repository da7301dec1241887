"""Workflows whose recorded histories are golden files (besides sdk.examples.order).

Changing what one of these decides breaks the replay of its golden file: that is the
point. Make such a change a new workflow (or re-record, knowingly).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sdk import ActivityError, ApplicationError, SearchAttributeKey, activity, workflow

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


@activity.defn
async def send_sms(message: str) -> str:
    return f"sms: {message}"


ACTIVITIES = [invite, tidy_up, wait_forever, step, send_sms]


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


@workflow.defn
class Tipping:
    """Updates: a sync handler, an async one that runs an activity, a validator that
    rejects (no event), a handler that fails; the run waits for its handlers."""

    def __init__(self) -> None:
        self.tips: list[int] = []
        self.closed = False

    @workflow.update
    def add_tip(self, amount: int) -> int:
        self.tips.append(amount)
        return sum(self.tips)

    @add_tip.validator
    def _check_tip(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("a tip must be positive")

    @workflow.update(name="tipTwice")
    async def tip_twice(self, amount: int) -> str:
        label: str = await workflow.execute_activity(step, f"tip {amount}",
                                                     start_to_close_timeout=T)
        self.tips += [amount, amount]
        return label

    @workflow.update
    async def refuse(self) -> None:
        raise ApplicationError("not today", type="Refused")

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.tips


@workflow.defn
class GoldenKid:
    @workflow.run
    async def run(self, n: int) -> int:
        return n * 2


@workflow.defn
class Family:
    """A child workflow in another shard, then a signal to a workflow that does not
    exist: the child's events and an external signal's failure in one history."""

    @workflow.run
    async def run(self) -> list[Any]:
        doubled = await workflow.execute_child_workflow(GoldenKid.run, 21, id="golden-kid")
        try:
            await workflow.get_external_workflow_handle("nobody").signal("hello")
            told = "told"
        except ApplicationError as err:
            told = str(err.type)
        return [doubled, told]


# --- versioning: one workflow type ("PatchedOrder") deployed four times ----------------
# The order is charged, the customer told it is paid, and the order waits to be picked
# up. v1 tells by push notification; v2 sends an SMS instead, behind
# workflow.patched("send-sms"); v3 deprecates the patch; v4 has removed the call.


class _PatchedOrderBase:
    def __init__(self) -> None:
        self.is_picked_up = False
        #: The branch the code took ("push" or "sms"): what tests compare.
        self.channel = ""
        #: Every answer workflow.patched gave in this run, in call order.
        self.answers: list[bool] = []

    @workflow.signal
    def picked_up(self) -> None:
        self.is_picked_up = True

    @workflow.query
    def get_channel(self) -> str:
        return self.channel

    async def charge(self, product_id: int) -> None:
        await workflow.execute_activity(step, f"charge {product_id}", start_to_close_timeout=T)

    async def push(self) -> str:
        self.channel = "push"
        notice: str = await workflow.execute_activity(step, "push: paid", start_to_close_timeout=T)
        return notice

    async def sms(self) -> str:
        self.channel = "sms"
        notice: str = await workflow.execute_activity(send_sms, "paid", start_to_close_timeout=T)
        return notice


@workflow.defn(name="PatchedOrder")
class PatchedOrderV1(_PatchedOrderBase):
    """The old code: no patch."""

    @workflow.run
    async def run(self, product_id: int) -> str:
        await self.charge(product_id)
        notice = await self.push()
        await workflow.wait_condition(lambda: self.is_picked_up)
        return notice


@workflow.defn(name="PatchedOrder")
class PatchedOrderV2(_PatchedOrderBase):
    """The new code behind a patch. It asks twice: the second answer must be the first."""

    @workflow.run
    async def run(self, product_id: int) -> str:
        await self.charge(product_id)
        self.answers.append(workflow.patched("send-sms"))
        notice = await self.sms() if self.answers[0] else await self.push()
        await workflow.wait_condition(lambda: self.is_picked_up)
        self.answers.append(workflow.patched("send-sms"))
        return notice


@workflow.defn(name="PatchedOrder")
class PatchedOrderV3(_PatchedOrderBase):
    """The patch deprecated: no run of v1 is open any more; only the new code is left."""

    @workflow.run
    async def run(self, product_id: int) -> str:
        await self.charge(product_id)
        workflow.deprecate_patch("send-sms")
        notice = await self.sms()
        await workflow.wait_condition(lambda: self.is_picked_up)
        return notice


@workflow.defn(name="PatchedOrder")
class PatchedOrderV4(_PatchedOrderBase):
    """The call removed: no run recorded by v2 needs replaying any more."""

    @workflow.run
    async def run(self, product_id: int) -> str:
        await self.charge(product_id)
        notice = await self.sms()
        await workflow.wait_condition(lambda: self.is_picked_up)
        return notice


PATCHED_ORDER_VERSIONS = [PatchedOrderV1, PatchedOrderV2, PatchedOrderV3, PatchedOrderV4]


@workflow.defn
class Tagged:
    """Search attributes (docs/visibility.md): started with some, upserted in two
    activations (the dict form, then typed updates, one removing an attribute) around a
    timer; returns what workflow.info() shows at the end."""

    @workflow.run
    async def run(self) -> dict[str, Any]:
        workflow.upsert_search_attributes({"Stage": "packing", "Amount": 10})
        await workflow.sleep(timedelta(milliseconds=50))
        workflow.upsert_search_attributes([
            SearchAttributeKey.for_keyword("Stage").value_set("shipped"),
            SearchAttributeKey.for_int("Amount").value_unset(),
            SearchAttributeKey.for_keyword_list("Tags").value_set(["a", "b"]),
        ])
        return {k: v for k, v in sorted(workflow.info().search_attributes.items())}
