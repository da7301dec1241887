"""The food-delivery order: the story from Temporal's "How Durable Execution Works".

Run a worker for it with `redurable worker sdk.examples.order --task-queue orders`.

Side effects are printed; when REDURABLE_ORDER_LEDGER names a file, each one is also
appended to it as a line, so tests and the demo can count that each happened once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from sdk import ApplicationError, RetryPolicy, activity, workflow

TASK_QUEUE = "orders"
#: Product ids from this one on are "out of stock": charging fails for good.
OUT_OF_STOCK_FROM = 1000


def _record(line: str) -> None:
    print(line, flush=True)
    ledger = os.environ.get("REDURABLE_ORDER_LEDGER")
    if ledger:
        with open(ledger, "a", encoding="utf-8") as f:
            info = activity.info()
            f.write(f"{info.workflow_id} {info.activity_type} {info.activity_id} {line}\n")


@activity.defn
async def charge_customer(product_id: int) -> None:
    if product_id >= OUT_OF_STOCK_FROM:
        raise ApplicationError(f"product {product_id} is out of stock", non_retryable=True)
    _record(f"charged customer for product {product_id}")


@activity.defn
async def refund_customer(product_id: int) -> None:
    _record(f"refunded customer for product {product_id}")


@activity.defn
async def send_push_notification(message: str) -> None:
    _record(f"push notification: {message}")


ACTIVITIES = [charge_customer, refund_customer, send_push_notification]
_STEP = {"start_to_close_timeout": timedelta(minutes=1),
         "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=5))}


@workflow.defn
class Order:
    def __init__(self) -> None:
        self.state = "Charging card"
        self.product_id: int | None = None
        self.delivered_at: str | None = None

    @workflow.signal
    def picked_up(self) -> None:
        if self.state == "Paid":
            self.state = "Picked up"

    @workflow.signal
    def delivered(self) -> None:
        if self.state == "Picked up":
            self.state = "Delivered"
            self.delivered_at = workflow.now().isoformat()

    @workflow.query
    def get_status(self) -> dict[str, Any]:
        return {"state": self.state, "delivered_at": self.delivered_at,
                "product_id": self.product_id}

    @workflow.run
    async def run(self, product_id: int, wait_seconds: float = 60.0) -> str:
        """`wait_seconds` is each signal wait and the rating delay (1 min in the story)."""
        self.product_id = product_id
        wait = timedelta(seconds=wait_seconds)
        try:
            await workflow.execute_activity(charge_customer, product_id, **_STEP)
        except Exception as exc:
            self.state = "Payment failed"
            await workflow.execute_activity(
                send_push_notification, "payment failed, order cancelled", **_STEP)
            raise ApplicationError(f"payment failed: {exc}") from exc
        self.state = "Paid"
        if not await workflow.wait_condition(lambda: self.state == "Picked up", timeout=wait):
            await self._give_up("not picked up in time")
        await workflow.execute_activity(send_push_notification, "order picked up", **_STEP)
        if not await workflow.wait_condition(lambda: self.state == "Delivered", timeout=wait):
            await self._give_up("not delivered in time")
        await workflow.execute_activity(send_push_notification, "order delivered", **_STEP)
        await workflow.sleep(wait)
        await workflow.execute_activity(send_push_notification, "rate your meal", **_STEP)
        self.state = "Completed"
        return "Completed"

    async def _give_up(self, reason: str) -> None:
        self.state = "Refunded"
        assert self.product_id is not None
        await workflow.execute_activity(refund_customer, self.product_id, **_STEP)
        await workflow.execute_activity(send_push_notification, f"order refunded: {reason}",
                                        **_STEP)
        raise ApplicationError(f"order {reason}", non_retryable=True)


WORKFLOWS = [Order]
