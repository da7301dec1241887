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
        (("drop", "nonsense"), "is not <shard>/<entry id> or queries:<task queue>/<entry id>"),
        (("drop", "queries:q/1-0"), "no dead letter 'queries:q/1-0'"),
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


async def _poison_queries(url: str, prefix: str) -> list[str]:
    """Two query requests of queue "q" dead-lettered the way a worker does it: read by a
    consumer that then died, claimed past max_deliveries (rd_claim). They land in the
    query stream's own dead letters, `<prefix>:{<query stream>}:dlq`."""
    client = await Client.connect(url, prefix=prefix)
    try:
        keys: Keys = client.keys
        # The queue registry is where `dlq` finds the task queues' query streams.
        await client.start_workflow("Anything", id="queried", task_queue="q")
        await client.store.ensure_groups("q")
        stream = keys.queries("q")
        for name in ("status", "total"):
            await client.redis.xadd(stream, {
                "request_id": name, "workflow_id": "queried", "name": name, "args": b"",
                "reply": keys.query_reply(name), "timeout_ms": "1000"})
        await client.redis.xreadgroup("workers", "gone", {stream: ">"})
        claimed = await client.store.claim_stale(stream, 0, "claimer", 0, max_deliveries=0)
        assert claimed == []  # both past max_deliveries: dead letters
        letters: Any = await client.redis.xrange(keys.stream_dead_letters(stream))
        return [f"queries:q/{sid.decode()}" for sid, _ in letters]
    finally:
        await client.close()


def test_dlq_lists_requeues_and_drops_query_requests(cli: Cli) -> None:  # noqa: F811
    first, second = anyio.run(_poison_queries, cli.url, cli.prefix)

    table = cli("dlq", "list")
    assert table.returncode == 0, table.stderr
    for text in (first, second, "query status", "query total", "queried"):
        assert text in table.stdout
    doc = cli.json("dlq", "list")
    assert [d["id"] for d in doc["dead_letters"]] == [first, second]
    assert doc["dead_letters"][0] | {"time": None, "reason": None} == {
        "id": first, "kind": "query", "task_queue": "q", "workflow_id": "queried",
        "run_id": "", "activity_type": None, "deliveries": 2, "reason": None,
        "time": None, "stream": f"{cli.prefix}:tq:q:queries"}

    assert cli.json("dlq", "requeue", first) == {"requeued": [first]}
    # The stream held none (dead-lettering deletes the entry): now the requeued one.
    assert anyio.run(_query_stream_len, cli.url, cli.prefix) == 1
    dropped = cli("dlq", "drop", "--all")
    assert dropped.returncode == 0 and f"dropped {second}" in dropped.stdout
    assert cli.json("dlq", "list") == {"dead_letters": []}
    assert cli("dlq", "drop", first).stderr.strip() == f"error: no dead letter '{first}'"


async def _query_stream_len(url: str, prefix: str) -> int:
    client = await Client.connect(url, prefix=prefix)
    try:
        return int(await client.redis.xlen(client.keys.queries("q")))
    finally:
        await client.close()
