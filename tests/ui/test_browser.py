"""The web UI in a real browser (Playwright + Debian chromium) against a real server,
with a worker running the order example (sdk/examples/order.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from playwright.async_api import Dialog, Page, expect

from sdk import Client, workflow
from sdk.examples.order import ACTIVITIES, Order
from sdk.testing import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.ui]

QUEUE = "orders"


@workflow.defn
class Notes:
    """Keeps the text of every `note` signal until `done`."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.finished = False

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.signal
    def done(self) -> None:
        self.finished = True

    @workflow.query
    def all_notes(self) -> list[str]:
        return self.notes

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.finished)
        return self.notes


@workflow.defn(name="Deploy")
class DeployV1:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.go)


@workflow.defn(name="Deploy")
class DeployV2(DeployV1):
    """A bad deploy: a timer now comes first, which the recorded history does not have."""

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(seconds=30))
        await workflow.wait_condition(lambda: self.go)


@workflow.defn
class Greeting:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"


def worker(client: Client) -> Any:
    return running_worker(client, task_queue=QUEUE, workflows=[Order, Notes],
                          activities=ACTIVITIES)


def detail(base: str, workflow_id: str, tab: str = "overview") -> str:
    return f"{base}/workflow?id={quote(workflow_id, safe='')}&tab={tab}"


def accept_dialogs(page: Page) -> list[Dialog]:
    """Accept every dialog `page` opens (actions ask for confirmation); the returned
    list collects them."""
    dialogs: list[Dialog] = []

    async def accept(dialog: Dialog) -> None:
        dialogs.append(dialog)
        await dialog.accept()

    page.on("dialog", accept)
    return dialogs


async def wait_for_state(client: Client, workflow_id: str, state: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    with anyio.fail_after(15):
        while (await handle.query(Order.get_status))["state"] != state:
            await anyio.sleep(0.05)


async def test_list_shows_a_started_workflow_and_its_detail_the_history(
    real_client: Client, ui_url: str, page: Page
) -> None:
    async with worker(real_client):
        await real_client.start_workflow(Order.run, 7, 30.0, id="order-7", task_queue=QUEUE)
        await wait_for_state(real_client, "order-7", "Paid")
        await page.goto(f"{ui_url}/workflows")
        row = page.locator("table.workflows tr", has_text="order-7")
        await expect(row).to_contain_text("RUNNING")
        await expect(row).to_contain_text("Order")
        await row.get_by_role("link", name="order-7").click()
        await expect(page.locator("h1")).to_contain_text("order-7")
        # Overview: the timeline has the charge activity as a finished bar.
        charge = page.locator("tr.bar-row", has_text="charge_customer #1")
        await expect(charge).to_contain_text("completed")
        await page.get_by_role("link", name="History").click()
        history = page.locator("table.history")
        await expect(history).to_contain_text("WorkflowExecutionStarted")
        await expect(history).to_contain_text("ActivityTaskScheduled")
        await expect(history.locator("tr[data-event-id='1']")).to_contain_text("orders")


async def test_queries_tab_answers_get_status_of_a_completed_order(
    real_client: Client, ui_url: str, page: Page
) -> None:
    async with worker(real_client):
        # Each signal wait is 4 s (then the rating delay): room for a busy machine to
        # signal in time, and the order then completes in about 4 s.
        handle = await real_client.start_workflow(Order.run, 5, 4.0, id="order-5",
                                                  task_queue=QUEUE)
        await wait_for_state(real_client, "order-5", "Paid")
        await handle.signal(Order.picked_up)
        await wait_for_state(real_client, "order-5", "Picked up")
        await handle.signal(Order.delivered)
        assert await handle.result(timeout=15) == "Completed"
        await page.goto(detail(ui_url, "order-5", "queries"))
        await expect(page.locator("select[name=name]")).to_have_value("get_status")
        await page.get_by_role("button", name="Run query").click()
        value = page.get_by_test_id("query-value")
        await expect(value).to_contain_text('"state": "Completed"')
        assert json.loads(await value.inner_text())["product_id"] == 5


async def test_signal_button_delivers_a_signal_the_workflow_acts_on(
    real_client: Client, ui_url: str, page: Page
) -> None:
    dialogs = accept_dialogs(page)
    async with worker(real_client):
        await real_client.start_workflow(Order.run, 8, 30.0, id="order-8", task_queue=QUEUE)
        await wait_for_state(real_client, "order-8", "Paid")
        await page.goto(detail(ui_url, "order-8", "actions"))
        await page.locator("form[action='/workflow/signal'] input[name=name]").fill("picked_up")
        await page.get_by_role("button", name="Send signal").click()
        await expect(page.get_by_role("status")).to_have_text("signal picked_up sent")
        assert [d.type for d in dialogs] == ["confirm"]
        # The workflow acted on it: state moved on and it notified "picked up".
        await wait_for_state(real_client, "order-8", "Picked up")


async def test_a_script_in_a_signal_argument_renders_as_text(
    real_client: Client, ui_url: str, page: Page
) -> None:
    payload = "<script>window.__xss = 1; alert('xss')</script><img src=x onerror=alert(2)>"
    dialogs = accept_dialogs(page)
    async with worker(real_client):
        await real_client.start_workflow(Notes.run, id="notes<b>x</b>", task_queue=QUEUE)
        await page.goto(detail(ui_url, "notes<b>x</b>", "actions"))
        form = page.locator("form[action='/workflow/signal']")
        await form.locator("input[name=name]").fill("note")
        await form.locator("textarea[name=args]").fill(json.dumps([payload]))
        await form.get_by_role("button", name="Send signal").click()
        await expect(page.get_by_role("status")).to_have_text("signal note sent")
        handle = real_client.get_workflow_handle("notes<b>x</b>")
        with anyio.fail_after(15):
            while await handle.query(Notes.all_notes) != [payload]:
                await anyio.sleep(0.05)
        await page.goto(detail(ui_url, "notes<b>x</b>", "history"))
        signaled = page.locator("tr", has_text="WorkflowExecutionSignaled")
        await expect(signaled).to_contain_text(payload)  # shown as text, verbatim
        await expect(page.locator("h1")).to_contain_text("notes<b>x</b>")
        assert await page.locator("main script, main img, h1 b").count() == 0
        assert await page.evaluate("window.__xss") is None
        assert [d.type for d in dialogs] == ["confirm"]  # the action's own confirmation, no alert


async def test_a_running_workflow_page_shows_new_events_without_a_reload(
    real_client: Client, ui_url: str, page: Page
) -> None:
    async with worker(real_client):
        handle = await real_client.start_workflow(Order.run, 9, 30.0, id="order-9",
                                                  task_queue=QUEUE)
        await wait_for_state(real_client, "order-9", "Paid")
        await page.goto(detail(ui_url, "order-9", "history"))
        await expect(page.locator("table.history")).to_contain_text("TimerStarted")
        await page.evaluate("window.__same_page = true")
        assert await page.locator("tr", has_text="WorkflowExecutionSignaled").count() == 0
        await handle.signal(Order.picked_up)
        await expect(page.locator("tr", has_text="WorkflowExecutionSignaled")).to_have_count(1)
        # Then the workflow's reaction (a notification activity) arrives too.
        await expect(page.locator("tr", has_text="send_push_notification")).not_to_have_count(0)
        assert await page.evaluate("window.__same_page") is True  # no reload happened


async def test_actions_refuse_requests_without_the_csrf_token_or_from_elsewhere(
    real_client: Client, ui_url: str, page: Page
) -> None:
    await real_client.start_workflow(Order.run, 4, 30.0, id="order-4", task_queue=QUEUE)
    await page.goto(detail(ui_url, "order-4", "actions"))  # sets the session cookie
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    form: dict[str, str | float | bool] = {"id": "order-4", "reason": "test"}
    missing = await page.request.post(f"{ui_url}/workflow/terminate", form=form,
                                      max_redirects=0)
    assert missing.status == 403
    foreign = await page.request.post(
        f"{ui_url}/workflow/terminate", form={**form, "csrf_token": token},
        headers={"Origin": "http://attacker.invalid"}, max_redirects=0)
    assert foreign.status == 403
    rebound = await page.request.get(f"{ui_url}/workflows",
                                     headers={"Host": "attacker.invalid"})
    assert rebound.status == 400
    assert (await real_client.get_workflow_handle("order-4").describe()).status == "RUNNING"
    ours = await page.request.post(
        f"{ui_url}/workflow/terminate", form={**form, "csrf_token": token},
        headers={"Origin": ui_url}, max_redirects=0)
    assert ours.status == 303
    assert (await real_client.get_workflow_handle("order-4").describe()).status == "TERMINATED"


async def test_overview_shows_the_mismatch_of_a_nondeterministic_workflow_task(
    real_client: Client, ui_url: str, page: Page
) -> None:
    async with running_worker(real_client, task_queue=QUEUE, workflows=[DeployV1]):
        handle = await real_client.start_workflow(DeployV1.run, id="deploy-1", task_queue=QUEUE)
        with anyio.fail_after(15):
            while (await handle.describe()).history_length < 2:  # its first task ran
                await anyio.sleep(0.05)
    async with running_worker(real_client, task_queue=QUEUE, workflows=[DeployV2]):
        await handle.signal(DeployV1.proceed)  # wakes it on a worker with the new code
        with anyio.fail_after(15):
            while (await handle.describe()).last_workflow_task_failure is None:
                await anyio.sleep(0.05)
        await page.goto(detail(ui_url, "deploy-1"))
        failure = page.locator("div.error")
        await expect(failure).to_contain_text("NondeterminismError")
        await expect(failure).to_contain_text("StartTimer")
        await expect(page.get_by_test_id("status")).to_have_text("RUNNING")


async def test_a_dead_letter_requeued_from_the_queue_page_runs_on(
    real_client: Client, ui_url: str, page: Page
) -> None:
    dialogs = accept_dialogs(page)
    # A worker without the type dead-letters its first workflow task (max_deliveries=1).
    async with running_worker(real_client, task_queue=QUEUE, workflows=[Notes],
                              max_deliveries=1):
        handle = await real_client.start_workflow("Greeting", "ui", id="greeting-1",
                                                  task_queue=QUEUE)
        with anyio.fail_after(15):
            while not (letters := await real_client.list_dead_letters()):
                await anyio.sleep(0.05)
    [letter] = letters
    await page.goto(f"{ui_url}/queues")
    row = page.locator("tr[data-dead-letter]", has_text="greeting-1")
    await expect(row).to_contain_text("workflow type 'Greeting' is not registered")
    async with running_worker(real_client, task_queue=QUEUE, workflows=[Greeting]):
        await row.get_by_role("button", name="Requeue").click()
        await expect(page.get_by_role("status")).to_have_text(f"requeued {letter.id}")
        await expect(page.locator("tr[data-dead-letter]")).to_have_count(0)
        assert await handle.result(timeout=15) == "hello ui"
    assert [d.message for d in dialogs] == [
        f"Put dead letter {letter.id} of greeting-1 back on task queue {QUEUE}?"]
