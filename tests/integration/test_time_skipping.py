"""WorkflowEnvironment: a plain embedded server, and one whose clock skips ahead while
the test waits and every workflow waits on a timer (engine/time_skipping.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from engine import time_skipping
from engine.functions import library_source
from sdk import ApplicationError, RetryPolicy, Worker, activity, workflow
from sdk.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio
DAY = timedelta(days=1)


@activity.defn
async def charge(month: int) -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("card declined")
    return f"charged for month {month}"


@workflow.defn
class Subscription:
    def __init__(self) -> None:
        self.cancelled = False

    @workflow.signal
    def cancel_subscription(self) -> None:
        self.cancelled = True

    @workflow.query
    def is_cancelled(self) -> bool:
        return self.cancelled

    @workflow.run
    async def run(self, months: int) -> dict[str, object]:
        start = workflow.now()
        charges = []
        for month in range(months):
            if await workflow.wait_condition(lambda: self.cancelled, timeout=30 * DAY):
                break
            charges.append(
                await workflow.execute_activity(
                    charge,
                    month,
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=RetryPolicy(initial_interval=timedelta(hours=6)),
                )
            )
        return {
            "charges": charges,
            "days": (workflow.now() - start) / DAY,
            "ended": workflow.now().isoformat(),
        }


async def test_thirty_days_pass_in_a_moment() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        assert env.supports_time_skipping
        before = await env.get_current_time()
        async with Worker(
            env.client,
            task_queue="q",
            workflows=[Subscription],
            activities=[charge],
            handle_signals=False,
        ):
            real_start = time.monotonic()
            with anyio.fail_after(30):
                result = await env.client.execute_workflow(
                    Subscription.run, 3, id="sub-1", task_queue="q"
                )
            real_s = time.monotonic() - real_start
        # Three 30-day waits, each followed by a retry 6 hours later, on the workflow's clock.
        assert result["charges"] == [f"charged for month {m}" for m in range(3)]
        days = result["days"]
        assert isinstance(days, float) and 90.75 <= days < 90.75 + real_s / 86400 + 0.001
        after = await env.get_current_time()
        assert after - before >= timedelta(days=90.75)
        ended = datetime.fromisoformat(str(result["ended"]))
        assert before + timedelta(days=90.75) <= ended <= after
        # The history's timestamps are on the same clock.
        events = [e async for e in env.client.get_workflow_handle("sub-1").fetch_history()]
        assert events[-1].timestamp - events[0].timestamp >= timedelta(days=90.75)


async def test_time_skips_only_while_the_test_waits() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(
            env.client,
            task_queue="q",
            workflows=[Subscription],
            activities=[charge],
            handle_signals=False,
        ):
            handle = await env.client.start_workflow(
                Subscription.run, 2, id="sub-2", task_queue="q"
            )
            start = await env.get_current_time()
            await anyio.sleep(0.3)  # not waiting on anything: the clock runs as usual
            assert await env.get_current_time() - start < timedelta(minutes=1)
            await env.sleep(10 * DAY)  # skipped: the 30-day wait is still on
            assert await env.get_current_time() - start >= 10 * DAY
            assert not await handle.query(Subscription.is_cancelled)
            await env.sleep(25 * DAY)  # past the first 30 days: one charge, after its retry
            await handle.signal(Subscription.cancel_subscription)
            with env.auto_time_skipping_disabled(), anyio.fail_after(30):
                result = await handle.result()
        assert result["charges"] == ["charged for month 0"]
        assert 35 <= float(str(result["days"])) < 36


async def test_env_sleep_with_no_workflows_moves_the_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        start = await env.get_current_time()
        await env.sleep(timedelta(hours=5))
        assert timedelta(hours=5) <= await env.get_current_time() - start < timedelta(hours=6)
        with pytest.raises(ValueError, match="duration >= 0"):
            await env.sleep(-1)
    with pytest.raises(RuntimeError, match="shut down"):
        await env.sleep(1)


async def test_local_environment_has_the_real_clock() -> None:
    async with await WorkflowEnvironment.start_local() as env:
        assert not env.supports_time_skipping
        now = await env.get_current_time()
        assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
        async with Worker(
            env.client,
            task_queue="q",
            workflows=[Subscription],
            activities=[charge],
            handle_signals=False,
        ):
            handle = await env.client.start_workflow(
                Subscription.run, 1, id="sub-3", task_queue="q"
            )
            await handle.signal(Subscription.cancel_subscription)
            with anyio.fail_after(30):
                assert (await handle.result())["charges"] == []
        await env.sleep(0.01)


def test_the_production_library_never_reads_the_clock_offset() -> None:
    from engine.keys import Keys

    keys = Keys("anything")
    assert keys.clock_offset() not in library_source()
    assert "real_now_ms" not in library_source()
    variant = time_skipping.time_skipping_library_source(keys)
    assert variant.startswith(library_source())
    assert keys.clock_offset() in variant
