"""`redurable dlq list|requeue|drop` as users run it (subprocesses, real server)."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest

from engine.keys import Keys
from sdk import Client
from tests.integration.test_cli import Cli, cli  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


async def _poison(url: str, prefix: str) -> list[str]:
    """Two dead letters by hand, as rd_claim would leave them: one per shard 0 and 1,
    each from a task stream of queue "q" that a requeue can put it back on."""
    client = await Client.connect(url, prefix=prefix)
    try:
        await client.store.ensure_groups("q")
        keys: Keys = client.keys
        ids = []
        for shard in (0, 1):
            stream = keys.workflow_tasks(shard, "q")
            sid: Any = await client.redis.xadd(keys.dead_letters(shard), {
                "stream": stream, "message_id": "1-0", "deliveries": "6",
                "reason": f"delivered 6 times (shard {shard})",
                "workflow_id": f"wf-{shard}", "run_id": "r", "epoch": "1"})
            ids.append(f"{shard}/{sid.decode()}")
        return ids
    finally:
        await client.close()


def test_dlq_list_requeue_drop(cli: Cli) -> None:  # noqa: F811
    empty = cli("dlq", "list")
    assert empty.returncode == 0 and "No dead letters." in empty.stdout
    first, second = anyio.run(_poison, cli.url, cli.prefix)

    table = cli("dlq", "list")
    assert table.returncode == 0, table.stderr
    for text in (first, second, "wf-0", "wf-1", "delivered 6 times (shard 1)", "workflow"):
        assert text in table.stdout
    doc = cli.json("dlq", "list")
    assert [d["id"] for d in doc["dead_letters"]] == [first, second]
    assert doc["dead_letters"][0] | {"time": None} == {
        "id": first, "kind": "workflow", "task_queue": "q", "workflow_id": "wf-0",
        "run_id": "r", "activity_type": None, "deliveries": 6,
        "reason": "delivered 6 times (shard 0)", "time": None,
        "stream": f"{cli.prefix}:{{0}}:tq:q:wf"}
    assert cli.json("dlq", "list", "--limit", "1")["dead_letters"][0]["id"] == first
    # Times as in every JSON document: ISO 8601, milliseconds, UTC offset.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00",
                        doc["dead_letters"][0]["time"])  # fmt: skip

    assert cli.json("dlq", "requeue", first) == {"requeued": [first]}
    requeued = anyio.run(_task_stream_len, cli.url, cli.prefix)
    assert requeued == 1
    dropped = cli("dlq", "drop", "--all")
    assert dropped.returncode == 0 and f"dropped {second}" in dropped.stdout
    assert cli.json("dlq", "list") == {"dead_letters": []}


async def _task_stream_len(url: str, prefix: str) -> int:
    client = await Client.connect(url, prefix=prefix)
    try:
        return int(await client.redis.xlen(client.keys.workflow_tasks(0, "q")))
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("requeue",), "give the dead letter ids to requeue"),
        (("drop", "0/1-0", "--all"), "not both"),
        (("drop", "nonsense"), "is not <shard>/<entry id>"),
        (("requeue", "0/1-0"), "no dead letter '0/1-0'"),
        (("drop", "77/1-0"), "shard 77 does not exist"),
    ],
)
def test_dlq_errors_are_one_line(cli: Cli, args: tuple[str, ...], message: str) -> None:  # noqa: F811
    done = cli("dlq", *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
