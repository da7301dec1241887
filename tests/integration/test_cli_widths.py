"""The CLI's tables at 80 and 200 columns (COLUMNS), in a terminal of 80 columns (a pty),
and piped: ids, run ids, dead-letter ids and statuses are always whole on one line, and
only the terminal's width squeezes a table (sdk/cli/tables.py)."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import ApplicationError, Client, RetryPolicy, activity, workflow
from sdk.testing import running_worker
from tests.integration.cli_support import ENV, ROOT, Cli, cli, redurable  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

#: An id as long as a UUID, and one longer than an 80-column terminal is wide.
LONG = "order-5-" + "x" * 28
LONGER = "order-5-" + "y" * 100
REASON = "card declined by the issuer: insufficient funds, try another card later on"


@activity.defn(name="charge_customer_with_retries")
async def charge(product_id: int) -> None:
    raise ApplicationError(REASON)


@workflow.defn(name="OrderWithALongTypeName")
class Charging:
    @workflow.run
    async def run(self, product_id: int) -> None:
        await workflow.execute_activity(
            charge, product_id, start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(minutes=10)),
        )  # fmt: skip


async def _setup(url: str, prefix: str) -> dict[str, Any]:
    """Two workflows waiting to retry their activity (BACKOFF, with the failure), one
    terminated, and a dead letter of the long one: what every table shows."""
    async with await Client.connect(url, prefix=prefix) as client:
        runs: dict[str, Any] = {}
        async with running_worker(client, task_queue="orders-with-a-long-queue-name",
                                  workflows=[Charging], activities=[charge]):  # fmt: skip
            for wid in (LONG, LONGER):
                handle = await client.start_workflow(
                    Charging.run, 5, id=wid, task_queue="orders-with-a-long-queue-name"
                )
                runs[wid] = handle.run_id
                with anyio.fail_after(15):
                    while not (await handle.describe()).pending_activities or (
                        (await handle.describe()).pending_activities[0].state != "BACKOFF"
                    ):
                        await anyio.sleep(0.05)
        done = await client.start_workflow("Other", id="order-5-t", task_queue="q")
        await done.terminate()
        stream = client.keys.workflow_tasks(0, "q")
        sid: Any = await client.redis.xadd(client.keys.dead_letters(0), {
            "stream": stream, "message_id": "1-0", "deliveries": "6", "reason": REASON,
            "workflow_id": LONG, "run_id": runs[LONG], "epoch": "1"})  # fmt: skip
        return {"runs": runs, "dead_letter": f"0/{sid.decode()}"}


@pytest.fixture
def world(cli: Cli) -> Iterator[dict[str, Any]]:  # noqa: F811
    yield anyio.run(_setup, cli.url, cli.prefix)


def _on_one_line(out: str, *needles: str) -> None:
    lines = out.splitlines()
    for needle in needles:
        assert any(needle in line for line in lines), f"{needle!r} not whole in:\n{out}"


def _commands(world: dict[str, Any]) -> dict[tuple[str, ...], list[str]]:
    """Each table command, and what must be whole on one line of its output."""
    return {
        ("workflow", "list"): [LONG, LONGER, "order-5-t", "RUNNING", "TERMINATED"],
        ("workflow", "describe", LONG): [LONG, world["runs"][LONG], "RUNNING", "BACKOFF",
                                         "charge_customer_with_retries"],
        ("workflow", "describe", LONGER): [LONGER, world["runs"][LONGER], "BACKOFF"],
        ("workflow", "show", LONG): [f"run_id={world['runs'][LONG]}", "ActivityTaskScheduled",
                                     "activity_type=charge_customer_with_retries"],
        ("dlq", "list"): [world["dead_letter"], LONG],
    }  # fmt: skip


@pytest.mark.parametrize("columns", [80, 200])
def test_tables_fit_columns_without_cutting_ids(
    cli: Cli, world: dict[str, Any], columns: int  # noqa: F811
) -> None:
    env = {**ENV, "COLUMNS": str(columns)}
    for command, needles in _commands(world).items():
        done = cli(*command, env=env)
        assert done.returncode == 0, done.stderr
        _on_one_line(done.stdout, *needles)
        if LONGER not in command and command != ("workflow", "list"):
            # Everything but the id longer than the terminal fits it.
            widest = max(len(line) for line in done.stdout.splitlines())
            assert widest <= columns, f"{widest} > {columns}:\n{done.stdout}"
    narrow = cli("workflow", "list", env={**ENV, "COLUMNS": "80"}).stdout
    wide = cli("workflow", "list", env={**ENV, "COLUMNS": "200"}).stdout
    assert "Left out at 80 columns: Task queue" in narrow
    assert "orders-with-a-long-queue-name" not in narrow
    # 200 columns hold all but the two columns that matter least next to a 108-character id.
    assert "Left out at 200 columns: Task queue, Close (-o json has them)" in wide
    row = next(line for line in wide.splitlines() if LONG in line)
    assert "OrderWithALongTypeName" in row and "RUNNING" in row
    assert "Left out" not in cli("dlq", "list", env={**ENV, "COLUMNS": "200"}).stdout


def test_piped_output_is_never_squeezed(cli: Cli, world: dict[str, Any]) -> None:  # noqa: F811
    """No COLUMNS and stdout a pipe: every column, every row on one line."""
    for command, needles in _commands(world).items():
        done = cli(*command)
        assert done.returncode == 0, done.stderr
        assert "Left out" not in done.stdout
        _on_one_line(done.stdout, *needles)
    listed = cli("workflow", "list").stdout
    row = next(line for line in listed.splitlines() if LONGER in line)
    assert "OrderWithALongTypeName" in row and "orders-with-a-long-queue-name" in row
    shown = cli("workflow", "show", LONG).stdout
    _on_one_line(shown, f"input=[5] run_id={world['runs'][LONG]} attempt=1 │")
    # As the README has it: `redurable workflow list | grep order-5`.
    args = " ".join(redurable("workflow", "list", "--redis-url", cli.url, "--prefix", cli.prefix))
    grep = subprocess.run(f"{args} | grep order-5-y", shell=True, capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=30)  # fmt: skip
    assert grep.returncode == 0 and LONGER in grep.stdout


def test_a_terminal_of_80_columns(cli: Cli, world: dict[str, Any]) -> None:  # noqa: F811
    """In a real terminal (a pty 80 columns wide), without COLUMNS: the terminal's width."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**ENV, "TERM": "xterm", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        redurable("dlq", "list", "--redis-url", cli.url, "--prefix", cli.prefix),
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError as exc:  # EIO: the process closed the terminal
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(30) == 0
    out = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode())
    _on_one_line(out, world["dead_letter"], LONG)
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "Left out at 80 columns:" in out

