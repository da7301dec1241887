"""Record the golden histories in tests/golden/ from real runs.

    python -m scripts.record_golden [--url redis://127.0.0.1:6379] [--only NAME ...]

Runs each scenario against a real server (the URL, else an embedded Valkey) under a
throwaway prefix, with a worker in this process, and writes its history as JSON.
tests/unit/test_golden.py replays these files with the current code. A file's name
carries the replay behaviour flags it was recorded under (engine.machine.LOGIC_FLAGS):
when the flags change, record again and keep the old files too. Never re-record a file
to make it pass: a golden file that no longer replays means old histories no longer do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from engine.machine import LOGIC_FLAGS
from sdk import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from sdk._devserver import EmbeddedServer
from sdk.examples import order
from sdk.testing import running_worker
from tests.golden import GOLDEN_DIR, Golden, dump
from tests.golden import workflows as gw

TASK_QUEUE = "golden"
Scenario = Callable[[Client], Awaitable[tuple[WorkflowHandle, type, str]]]


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def order_state(handle: WorkflowHandle, state: str) -> None:
    async def reached() -> bool:
        status: dict[str, Any] = await handle.query(order.Order.get_status)
        return bool(status["state"] == state)

    await wait_for(reached)


async def order_completed(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(
        order.Order.run, 3, 0.3, id="order-3", task_queue=TASK_QUEUE
    )
    await order_state(handle, "Paid")
    await handle.signal(order.Order.picked_up)
    await order_state(handle, "Picked up")
    await handle.signal(order.Order.delivered)
    return handle, order.Order, "the order story: charged, picked up, delivered, rated"


async def order_payment_failed(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(
        order.Order.run, order.OUT_OF_STOCK_FROM, 0.3, id="order-oos", task_queue=TASK_QUEUE
    )
    return handle, order.Order, "charging fails for good: notify, then fail the workflow"


async def order_not_picked_up(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(
        order.Order.run, 4, 0.2, id="order-late", task_queue=TASK_QUEUE
    )
    return handle, order.Order, "nobody picks the order up in time: refund, notify, fail"


async def party(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(gw.Party.run, "ann", id="party", task_queue=TASK_QUEUE)

    async def waiting() -> bool:
        return bool(await handle.query(gw.Party.current_stage) == "waiting")

    await wait_for(waiting)  # so the guests end the wait, not its timeout
    for guest in ("bob", "cy", "di"):
        await handle.signal(gw.Party.arrive, guest)
    return handle, gw.Party, "gather over activities and a timer; signals; wait_condition"


async def cancelled(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(
        gw.CancelWithCleanup.run, id="cancel-me", task_queue=TASK_QUEUE
    )

    async def running() -> bool:
        desc = await handle.describe()
        return any(p.state == "STARTED" for p in desc.pending_activities)

    await wait_for(running)
    await handle.cancel("golden")
    return handle, gw.CancelWithCleanup, "cancelled mid-activity; a cleanup activity runs"


async def two_steps(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(gw.TwoSteps.run, id="two-steps", task_queue=TASK_QUEUE)
    return handle, gw.TwoSteps, "replayed against changed code, it must raise NondeterminismError"


async def updates(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(gw.Tipping.run, id="tipping", task_queue=TASK_QUEUE)
    await handle.execute_update(gw.Tipping.add_tip, 5, id="tip-1")
    with contextlib.suppress(WorkflowUpdateFailedError):
        await handle.execute_update(gw.Tipping.add_tip, -1, id="tip-rejected")
    with contextlib.suppress(WorkflowUpdateFailedError):
        await handle.execute_update(gw.Tipping.refuse, id="refused")
    twice = await handle.start_update(gw.Tipping.tip_twice, 2, id="tip-twice",
                                      wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    await handle.signal(gw.Tipping.close)
    await twice.result()
    return handle, gw.Tipping, ("updates: accepted and completed in one task, one rejected "
                                "(no event), one failed, one over an activity")


async def family(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(gw.Family.run, id="family", task_queue=TASK_QUEUE)
    return handle, gw.Family, "a child workflow's result, then an external signal that fails"


def patched_order(version: type, description: str) -> Scenario:
    """One deploy of PatchedOrder (docs/versioning.md), run by a worker that has only
    this version, on a queue of its own: as a fleet on that code would run it."""

    async def scenario(client: Client) -> tuple[WorkflowHandle, type, str]:
        queue = f"{TASK_QUEUE}-{version.__name__.lower()}"
        async with running_worker(
            client, task_queue=queue, workflows=[version], activities=gw.ACTIVITIES
        ):
            handle = await client.start_workflow(
                "PatchedOrder", 3, id=f"patched-order-{version.__name__[-2:].lower()}",
                task_queue=queue,
            )

            async def told() -> bool:
                return bool(await handle.query("get_channel"))

            await wait_for(told)
            await handle.signal("picked_up")
            with anyio.fail_after(30):
                await handle.result()
        return handle, version, description

    return scenario


async def search_attributes(client: Client) -> tuple[WorkflowHandle, type, str]:
    handle = await client.start_workflow(gw.Tagged.run, id="tagged", task_queue=TASK_QUEUE,
                                         search_attributes={"Customer": "c-1"})
    return handle, gw.Tagged, "search attributes at start and upserted (set, change, unset)"


SCENARIOS: dict[str, Scenario] = {
    "order_completed": order_completed,
    "order_payment_failed": order_payment_failed,
    "order_not_picked_up": order_not_picked_up,
    "party": party,
    "cancelled": cancelled,
    "nondeterministic": two_steps,
    "updates": updates,
    "family": family,
    "patch_before": patched_order(
        gw.PatchedOrderV1, "PatchedOrder before the patch: a push notification, no marker"
    ),
    "patch_new_run": patched_order(
        gw.PatchedOrderV2, "a new run on the patched code: a core_patch marker, then an SMS"
    ),
    "patch_deprecated": patched_order(
        gw.PatchedOrderV3, "deprecate_patch: a deprecated core_patch marker, then an SMS"
    ),
    "patch_removed": patched_order(
        gw.PatchedOrderV4, "the patch call removed: no marker, an SMS"
    ),
    "search_attributes": search_attributes,
}


async def record(client: Client, name: str, scenario: Scenario, out: Path) -> None:
    handle, workflow_cls, description = await scenario(client)
    result: Any = None
    failure: dict[str, Any] | None = None
    try:
        with anyio.fail_after(30):
            result = await handle.result()
    except WorkflowFailureError:
        pass
    events = [e for _, e in await client.store.read_history(handle.id)]
    close = events[-1]
    attrs = close.attributes()
    if "failure" in attrs:
        failure = attrs["failure"]
    desc = await handle.describe()
    golden = Golden(
        name=name,
        description=description,
        workflow=f"{workflow_cls.__module__}:{workflow_cls.__qualname__}",
        workflow_id=handle.id,
        run_id=desc.run_id,
        status=desc.status,
        result=json.loads(json.dumps(result)),
        failure=failure,
        events=events,
    )
    # The replay behaviour flags are part of the name: a history recorded under other
    # flags is another golden file, kept so old behaviour keeps being replayed.
    path = out / f"{name}.flags-{LOGIC_FLAGS.replace(',', '-') or 'none'}.json"
    dump(golden, path)
    print(f"{name}: {desc.status}, {len(events)} events -> {path}")


@contextlib.asynccontextmanager
async def server_url(url: str | None) -> AsyncIterator[str]:
    if url:
        yield url
        return
    with EmbeddedServer() as server:
        yield server.url


async def main(url: str | None, only: list[str], out: Path) -> None:
    prefix = "golden" + uuid.uuid4().hex[:8]
    async with server_url(url) as real_url:
        client = await Client.connect(real_url, prefix=prefix)
        try:
            async with running_worker(
                client,
                task_queue=TASK_QUEUE,
                workflows=[order.Order, gw.Party, gw.CancelWithCleanup, gw.TwoSteps, gw.Tipping,
                           gw.Tagged, gw.Family, gw.GoldenKid],
                activities=[*order.ACTIVITIES, *gw.ACTIVITIES],
            ):
                for name, scenario in SCENARIOS.items():
                    if not only or name in only:
                        await record(client, name, scenario, out)
        finally:
            async for key in client.redis.scan_iter(match=f"{prefix}:*"):
                await client.redis.delete(key)
            await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Redis URL (default: an embedded Valkey server)")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(SCENARIOS))
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR)
    ns = parser.parse_args()
    sys.exit(asyncio.run(main(ns.url, ns.only, ns.out)))
