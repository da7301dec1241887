"""The UI's Schedules pages over plain HTTP: errors are pages with the right status, and
what a schedule holds is escaped."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
import redis

from engine.keys import Keys
from sdk import Client, Schedule, ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleSpec
from tests.integration.test_ui_pages import get, ui  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/schedule", 400, "missing parameter"),
    ("/schedule?id=nope", 404, "schedule &#39;nope&#39; not found"),
    ("/schedule?id=a%7Bb%7D", 400, "forbidden character"),
])
def test_bad_schedule_requests(
    ui: tuple[str, redis.Redis, Keys], path: str, status: int, message: str  # noqa: F811
) -> None:
    code, body, _ = get(ui[0] + path)
    assert code == status and message in body


def test_schedules_pages_escape_what_they_show(
    ui: tuple[str, redis.Redis, Keys], redis_url: str  # noqa: F811
) -> None:
    base, _, keys = ui

    async def make() -> None:
        async with await Client.connect(redis_url, prefix=keys.prefix) as client:
            await client.create_schedule("<b>s</b>", Schedule(
                action=ScheduleActionStartWorkflow("<i>W</i>", "<script>", id="w",
                                                   task_queue="q"),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))])))

    anyio.run(make)
    code, body, _ = get(base + "/schedules")
    assert code == 200
    assert "&lt;b&gt;s&lt;/b&gt;" in body and "&lt;i&gt;W&lt;/i&gt;" in body
    assert "<b>s</b>" not in body
    code, body, _ = get(base + "/schedule?id=%3Cb%3Es%3C%2Fb%3E")
    assert code == 200
    assert "&lt;script&gt;" in body and "<script>\"" not in body and "every 1:00:00" in body
