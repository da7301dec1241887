"""The Schedules pages in a real browser: the list, a schedule's detail, and its
trigger and pause buttons, with a worker firing it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Page, expect

from sdk import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from sdk.testing import running_worker
from tests.integration.schedule_workflows import Tick
from tests.ui.test_browser import accept_dialogs

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.ui]


async def test_schedules_list_detail_trigger_and_pause(
    real_client: Client, ui_url: str, page: Page
) -> None:
    handle = await real_client.create_schedule("hourly-report", Schedule(
        action=ScheduleActionStartWorkflow(Tick.run, "ui", id="report", task_queue="sched"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))])))
    dialogs = accept_dialogs(page)
    async with running_worker(real_client, task_queue="sched", workflows=[Tick]):
        await page.goto(f"{ui_url}/workflows")
        await page.get_by_role("link", name="Schedules").click()
        row = page.locator("table.schedules tr", has_text="hourly-report")
        await expect(row).to_contain_text("Tick")
        await expect(row).to_contain_text("every 1:00:00")
        await expect(row).to_contain_text("active")
        await row.get_by_role("link", name="hourly-report").click()
        await expect(page.locator("h1")).to_contain_text("hourly-report")
        await expect(page.locator("table.recent-fires")).to_contain_text("Not fired yet")

        await page.get_by_role("button", name="Trigger now").click()
        await expect(page.locator(".notice")).to_contain_text("triggered")
        # The worker fires it within a second or so; the page shows it on reload.
        fired = page.locator("table.recent-fires a", has_text="report-")
        for _ in range(20):
            if await fired.count():
                break
            await page.wait_for_timeout(500)
            await page.reload()
        await expect(fired).to_have_count(1)
        await fired.click()
        await expect(page.locator("h1")).to_contain_text("report-")

        await page.go_back()
        await page.get_by_role("button", name="Pause").click()
        await expect(page.locator("h1")).to_contain_text("paused")
        assert (await handle.describe()).schedule.state.paused
        await page.get_by_role("button", name="Unpause").click()
        await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert [d.message for d in dialogs][:1] == ["Fire schedule hourly-report now?"]
