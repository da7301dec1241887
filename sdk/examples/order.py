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


async def _step(fn: Any, *args: Any) -> Any:
    """Every step of the story: 1 min start-to-close, retried with backoff up to 5 s."""
    return await workflow.execute_activity(
        fn,
        *args,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
    )


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
        return {
            "state": self.state,
            "delivered_at": self.delivered_at,
            "product_id": self.product_id,
        }

    @workflow.run
    async def run(self, product_id: int, wait_seconds: float = 60.0,
                  rating_delay_seconds: float | None = None) -> str:
        """`wait_seconds` is each signal wait, and the rating delay unless
        `rating_delay_seconds` is given (1 min each in the story). Tests give the signals
        a long wait, so that a loaded machine does not make the order give up, and the
        rating a short one."""
        self.product_id = product_id
        wait = timedelta(seconds=wait_seconds)
        rating_delay = wait if rating_delay_seconds is None else timedelta(
            seconds=rating_delay_seconds)
        try:
            await _step(charge_customer, product_id)
        except Exception as exc:
            self.state = "Payment failed"
            await _step(send_push_notification, "payment failed, order canceled")
            raise ApplicationError(f"payment failed: {exc}") from exc
        self.state = "Paid"
        if not await workflow.wait_condition(lambda: self.state == "Picked up", timeout=wait):
            await self._give_up("not picked up in time")
        await _step(send_push_notification, "order picked up")
        if not await workflow.wait_condition(lambda: self.state == "Delivered", timeout=wait):
            await self._give_up("not delivered in time")
        await _step(send_push_notification, "order delivered")
        await workflow.sleep(rating_delay)
        await _step(send_push_notification, "rate your meal")
        self.state = "Completed"
        return "Completed"

    async def _give_up(self, reason: str) -> None:
        self.state = "Refunded"
        assert self.product_id is not None
        await _step(refund_customer, self.product_id)
        await _step(send_push_notification, f"order refunded: {reason}")
        raise ApplicationError(f"order {reason}", non_retryable=True)


WORKFLOWS = [Order]
