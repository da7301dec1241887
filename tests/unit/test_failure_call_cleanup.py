"""An attempt's end is cleaned up (its slot, its suspect mark, its claimed count)
whatever happens while its failure call is built: the call is made in _run's finally
since the one-write final failures (sdk/worker/activity_tasks.py), and an error there
(a failure that cannot be written: a `type` that is no JSON) skipped the rest of it."""

from __future__ import annotations

import enum

import anyio
import pytest

from sdk import ApplicationError, Client, Worker, activity
from sdk.worker.task_entry import TaskEntry

pytestmark = pytest.mark.anyio
QUEUE = "q"


class Kind(enum.Enum):
    BAD = 1


@activity.defn
async def odd_failure() -> None:
    raise ApplicationError("boom", type=Kind.BAD)  # type: ignore[arg-type]


async def _run_one(fake_client: Client) -> Worker:
    worker = Worker(fake_client, task_queue=QUEUE, activities=[odd_failure],
                    handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1",
              b"attempt": b"1", b"activity_type": b"odd_failure", b"input": b"\x90"}
    task = TaskEntry(stream, "1-0", fields)
    plumbing.count_claimed([task])
    plumbing.suspect = (stream, "1-0")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            activities.start([task])
            for _ in range(100):
                await anyio.sleep(0.01)
                runner = next(iter(activities.running.values()), None)
                if runner is None or (runner.runner is not None and runner.runner.done()):
                    break
            tg.cancel_scope.cancel()
    return worker


async def test_an_attempt_whose_failure_call_raises_frees_its_slot_and_suspect(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot build the call")

    monkeypatch.setattr(fake_client.store, "act_complete_call", broken)
    worker = await _run_one(fake_client)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    assert activities.running == {}
    assert plumbing.suspect is None
    assert plumbing.claimed_in_flight == 0


async def test_a_failure_type_that_is_no_str_is_still_written(fake_client: Client) -> None:
    """to_failure kept a non-str ApplicationError `type` as it was: json.dumps raised
    while the failure call was built, and the attempt never ended (its task held and
    touched for ever, the workflow waiting on it)."""
    worker = await _run_one(fake_client)
    [call] = worker._activity_tasks.completions
    assert b'"type":"Kind.BAD"' in b"".join(
        a if isinstance(a, bytes) else str(a).encode() for a in call.args)
