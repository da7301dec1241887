"""A retried activity failure whose details hold a float that is not finite (a NaN the
activity computed): the failure's JSON carried NaN, which the Lua's cjson decodes and
cannot encode again, and rd_act_complete's retry (retry_activity keeps the failure in
the activity's state) failed after it had acknowledged the task and cleared its
timers: no retry was ever armed, and the workflow waited for ever."""

from __future__ import annotations

import math
from datetime import timedelta

import anyio
import pytest

from engine.errors import ApplicationError
from sdk import Client, RetryPolicy, activity, workflow
from sdk.testing import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
TQ = "failure-not-finite"


@activity.defn
async def ratio() -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("no ratio yet", math.nan, math.inf)
    return "ok"


@workflow.defn
class Ratio:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_activity(
            ratio, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        return result


@pytest.mark.timeout(60)
async def test_a_failure_with_a_nan_detail_is_retried(real_client: Client) -> None:
    client = real_client
    async with running_worker(client, task_queue=TQ, workflows=[Ratio], activities=[ratio]):
        handle = await client.start_workflow(Ratio.run, id="nan-detail", task_queue=TQ)
        with anyio.fail_after(15):
            assert await handle.result() == "ok"
