"""The unstick calls of workflows the sticky cache let go (sdk/worker/workflow_tasks.py
`_told`): an error reply that says "not now" is sent again, another is logged once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from engine.calls import Call
from engine.store import Store
from sdk import Client, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Waits:
    def __init__(self) -> None:
        self.seen = 0

    @workflow.signal
    def ping(self) -> None:
        self.seen += 1

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.seen >= 1)
        return self.seen


def _answer_first_unstick_with(
    monkeypatch: pytest.MonkeyPatch, error: str, sent: list[Call]
) -> None:
    """The first rd_unstick is not run: its reply is `error`. Every rd_unstick sent is
    recorded in `sent`."""
    call_many = Store.call_many

    async def answering(self: Store, calls: Sequence[Call]) -> list[Any]:
        unsticks = [c for c in calls if c.function == "rd_unstick"]
        sent.extend(unsticks)
        if len(sent) != len(unsticks) or not unsticks:  # not the first one
            return await call_many(self, calls)
        first = unsticks[0]
        replies = await call_many(self, [c for c in calls if c is not first])
        replies.insert(calls.index(first), ResponseError(error))
        return replies

    monkeypatch.setattr(Store, "call_many", answering)


async def _owner(client: Client, wf_id: str) -> bytes | None:
    raw: Any = await client.redis.hget(client.keys.workflow(wf_id), "sticky")
    return raw  # type: ignore[no-any-return]


async def _let_one_go(client: Client, sent: list[Call]) -> None:
    """Workflow "one" cached, then "two" started: its task makes room, one is let go
    and its unstick sent (answered by _answer_first_unstick_with)."""
    await client.start_workflow(Waits.run, id="one", task_queue="q")
    with anyio.fail_after(10):
        while await _owner(client, "one") is None:
            await anyio.sleep(0.01)
    await client.start_workflow(Waits.run, id="two", task_queue="q")
    with anyio.fail_after(10):
        while not sent:
            await anyio.sleep(0.01)


async def test_an_unstick_answered_not_now_is_sent_again(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fake_client
    sent: list[Call] = []
    _answer_first_unstick_with(monkeypatch, "TRYAGAIN the slot of {x} is moving", sent)
    async with running_worker(client, task_queue="q", workflows=[Waits],
                              max_cached_workflows=1):
        await _let_one_go(client, sent)
        # Its unstick answered TRYAGAIN: the next round trip carries it again (a third
        # workflow's task gives one).
        await client.start_workflow(Waits.run, id="three", task_queue="q")
        with anyio.fail_after(10):
            while await _owner(client, "one") is not None:
                await anyio.sleep(0.01)
        handles = [client.get_workflow_handle(w) for w in ("one", "two", "three")]
        for handle in handles:
            await handle.signal(Waits.ping)
        with anyio.fail_after(10):
            for handle in handles:
                assert await handle.result() == 1


async def test_an_unstick_that_failed_for_good_is_logged_once_not_sent_again(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fake_client
    sent: list[Call] = []
    _answer_first_unstick_with(monkeypatch, "ERR something is wrong for good", sent)
    one_key = client.keys.workflow("one")
    with capture_logs() as logs:
        async with running_worker(client, task_queue="q", workflows=[Waits],
                                  max_cached_workflows=1):
            await _let_one_go(client, sent)
            # two let go in turn: its unstick's round trip would carry one's again.
            await client.start_workflow(Waits.run, id="three", task_queue="q")
            with anyio.fail_after(10):
                while await _owner(client, "two") is not None:
                    await anyio.sleep(0.01)
    assert [c for c in sent if one_key in c.keys] == sent[:1]
    failures = [e for e in logs if e["event"] == "workflow_unstick_failed"]
    assert len(failures) == 1
    assert failures[0]["workflows"] == ["one"]
    assert "for good" in failures[0]["error"]
