"""The CLI on run chains: `workflow describe/show/result --run-id` read a closed run of
the chain, and `workflow start --cron` checks its expression."""

from __future__ import annotations

import anyio
import pytest

from sdk import Client
from sdk.testing import running_worker
from tests.integration.cli_support import Cli, cli  # noqa: F401  (the fixture)
from tests.integration.test_run_chains import Countdown

pytestmark = pytest.mark.anyio


async def test_a_closed_run_by_run_id(cli: Cli) -> None:  # noqa: F811
    client = await Client.connect(cli.url, prefix=cli.prefix)
    try:
        async with running_worker(client, task_queue="q", workflows=[Countdown],
                                  graceful_shutdown_timeout=0.3):
            handle = await client.start_workflow(Countdown.run, 1, id="cc-1", task_queue="q")
            with anyio.fail_after(10):
                last = await handle.result()
    finally:
        await client.close()
    first = handle.run_id
    assert first is not None
    described = cli.json("workflow", "describe", "cc-1", "--run-id", first)
    assert (described["run_id"], described["status"]) == (first, "CONTINUED_AS_NEW")
    current = cli.json("workflow", "describe", "cc-1")
    assert (current["run_id"], current["continued_run_id"]) == (last["run_id"], first)
    events = cli.json("workflow", "show", "cc-1", "--run-id", first)
    assert events[-1]["type"] == "WorkflowExecutionContinuedAsNew"
    done = cli("workflow", "result", "cc-1", "--run-id", last["run_id"], "-o", "json")
    assert done.returncode == 0, done.stderr
    done = cli("workflow", "result", "cc-1", "--run-id", first)
    assert done.returncode == 1 and "continued as new" in done.stderr
    done = cli("workflow", "describe", "cc-1", "--run-id", "f" * 32)
    assert done.returncode == 1 and "not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_start_with_a_bad_cron_expression(cli: Cli) -> None:  # noqa: F811
    done = cli("workflow", "start", "Report", "-q", "q", "--cron", "61 * * * *")
    assert done.returncode == 1
    assert "bad cron_schedule '61 * * * *'" in done.stderr and "Traceback" not in done.stderr
