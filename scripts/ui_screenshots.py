"""Screenshots of the web UI for docs/ui.md, taken with the browser setup of its tests.

    python -m scripts.ui_screenshots                 # embedded Valkey on a free port
    python -m scripts.ui_screenshots --out docs/img

Run from the repository root. It starts an embedded Valkey server, a worker for the
order example (sdk/examples/order.py) and the UI, plays a few orders (one delivered,
one out of stock, one waiting for pick-up), and saves ui-list.png (the workflow list),
ui-timeline.png (a delivered order's overview with its timeline) and ui-queries.png
(the Queries tab answering get_status of that order) under --out.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import anyio

from sdk import Client, WorkflowFailureError
from sdk._devserver import EmbeddedServer
from sdk.examples.order import ACTIVITIES, TASK_QUEUE, Order
from sdk.testing import running_worker
from tests.ui.browser import chromium
from tests.ui.harness import ui_server

PREFIX = "shop"


async def until_state(client: Client, workflow_id: str, state: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    with anyio.fail_after(30):
        while (await handle.query(Order.get_status))["state"] != state:
            await anyio.sleep(0.05)


async def play_orders(client: Client) -> None:
    """A delivered order (short waits), a failed one, and ones still running."""
    delivered = await client.start_workflow(Order.run, 3, 3.0, id="order-3", task_queue=TASK_QUEUE)
    await until_state(client, "order-3", "Paid")
    await anyio.sleep(0.4)
    await delivered.signal(Order.picked_up)
    await until_state(client, "order-3", "Picked up")
    await anyio.sleep(0.3)
    await delivered.signal(Order.delivered)
    out_of_stock = await client.start_workflow(Order.run, 1001, id="order-1001",
                                               task_queue=TASK_QUEUE)
    for product in (7, 12):
        await client.start_workflow(Order.run, product, 600.0, id=f"order-{product}",
                                    task_queue=TASK_QUEUE)
    await delivered.result(timeout=30)
    with contextlib.suppress(WorkflowFailureError):  # failing is what this order is for
        await out_of_stock.result(timeout=30)


async def shoot(redis_url: str, out: Path) -> None:
    async with (
        await Client.connect(redis_url, prefix=PREFIX) as client,
        running_worker(client, task_queue=TASK_QUEUE, workflows=[Order],
                       activities=ACTIVITIES, identity="worker-1"),
    ):
        await play_orders(client)
        with ui_server(redis_url, PREFIX) as base:
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(10_000)
                await page.goto(f"{base}/workflows")
                await page.screenshot(path=out / "ui-list.png")
                await page.goto(f"{base}/workflow?id=order-3")
                await page.screenshot(path=out / "ui-timeline.png", full_page=True)
                await page.goto(f"{base}/workflow?id=order-3&tab=queries")
                await page.get_by_role("button", name="Run query").click()
                await page.get_by_test_id("query-value").wait_for()
                await page.screenshot(path=out / "ui-queries.png")
    for name in ("ui-list.png", "ui-timeline.png", "ui-queries.png"):
        print(out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with EmbeddedServer() as server:
        anyio.run(shoot, server.url, args.out)


if __name__ == "__main__":
    main()
