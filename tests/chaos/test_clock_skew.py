"""Scenario 7 at CI size: workers whose clocks are 5 minutes ahead and behind
(libfaketime) fire timers and timeouts on the server's clock, count as live, and answer
queries (scripts/chaos/clock_skew.py; full size: `python -m scripts.chaos.clock_skew`)."""

from __future__ import annotations

import time

import anyio
import pytest

from scripts.chaos import clock_skew
from scripts.chaos.poison_workflows import SignalLog
from sdk import Client
from sdk.client.registry import live_registry
from sdk.testing import running_worker
from sdk.worker import liveness as _liveness
from tests.chaos.marks import SCENARIO

pytestmark = SCENARIO

#: A timer decided on a skewed worker's clock would be off by the skew (300,000 ms);
#: the goal is under 100 ms, which the runner reports. Here only a wide bound is
#: asserted, so a busy CI machine cannot fail it.
FAR_OFF_MS = 5000


@pytest.fixture(scope="module")
def faketime() -> str:
    found, why = clock_skew.ensure_faketime()
    if found is None:
        pytest.skip(why)
    return found


@pytest.mark.timeout(120)
async def test_timers_fire_on_server_time_under_skewed_workers(
    redis_url: str, faketime: str
) -> None:
    cfg = clock_skew.SkewConfig(workflows=6, ms=400)
    report = await clock_skew.run(redis_url, cfg, faketime)
    print(report.line())
    # The skew really is there: each worker's clock is about 5 minutes off.
    assert [round(o / 60) for o in report.worker_offsets_s] == [5, -5]
    assert report.verdict.ok, report.verdict.details()
    assert sorted(report.late) == ["activity", "condition", "sleep"]
    for kind, samples in report.late.items():
        assert len(samples) == cfg.workflows, kind
        assert min(samples) >= 0, f"{kind} fired early: {samples}"
        assert max(samples) < FAR_OFF_MS, f"{kind} fired late: {samples}"
    assert report.live_workers == 2  # beats on the server clock, not the worker's
    assert report.query_answered  # the query deadline is on the server clock too


def test_lateness_reads_event_times() -> None:
    def event(kind: str, ts: int) -> dict[bytes, bytes]:
        return {b"type": kind.encode(), b"ts": str(ts).encode()}

    events = [event("TimerStarted", 1000), event("TimerFired", 1530),
              event("TimerStarted", 1600), event("TimerFired", 2110),
              event("ActivityTaskScheduled", 2200), event("ActivityTaskTimedOut", 2370)]
    assert clock_skew._lateness(events, 500, 150) == {"sleep": 30, "condition": 10,
                                                      "activity": 20}


class _SkewedTime:
    """Stands in for the liveness module's `time` (where the worker reads its wall
    clock): wall clock `offset_s` off."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.mark.parametrize("offset_s", [300.0, -300.0])
async def test_skewed_worker_beats_and_answers_on_server_time(
    client: Client, monkeypatch: pytest.MonkeyPatch, offset_s: float
) -> None:
    """Regression: beats were scored on the worker's clock (a worker 5 minutes behind
    looked dead to `workflow start`'s live-worker check and to other workers' tidying),
    and query deadlines were compared with the worker's clock (a worker 5 minutes
    ahead dropped every query as expired)."""
    monkeypatch.setattr(_liveness, "time", _SkewedTime(offset_s))
    async with running_worker(client, task_queue="q", workflows=[SignalLog]):
        handle = await client.start_workflow(SignalLog.run, 1, id="wf-skew", task_queue="q")
        assert await handle.query(SignalLog.received, timeout=5) == 0
        assert (await live_registry(client, "q")).live_workers == 1
        await handle.signal(SignalLog.add, 4)
        with anyio.fail_after(10):
            assert await handle.result() == [4]
