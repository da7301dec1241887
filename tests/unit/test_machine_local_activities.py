"""Local activities on the replay machine, with plain event lists (tests/unit/sim.py
plays the worker that runs them): markers recorded live in the order replay resolves
them, replay from the markers without running anything, and non-determinism."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.errors import ActivityError, ApplicationError, NondeterminismError, to_failure
from engine.local_activities import LocalActivityOutcome, LocalActivityRequest
from sdk import activity, workflow
from tests.unit.sim import Sim, codec, replay

T = timedelta(seconds=5)


@activity.defn
async def lookup(key: str) -> str:
    return key.upper()


@activity.defn
async def lookup_other(key: str) -> str:
    return key.lower()


@workflow.defn
class Lookups:
    @workflow.run
    async def run(self, key: str) -> list[Any]:
        first = await workflow.execute_local_activity(lookup, key, start_to_close_timeout=T)
        # One local activity and a timer started in the same pass: the timer's command
        # comes before the marker, live and replayed alike.
        second = workflow.start_local_activity(lookup, first + "!", start_to_close_timeout=T)
        await workflow.sleep(1)
        try:
            third = await workflow.execute_local_activity(lookup, "x", start_to_close_timeout=T)
        except ActivityError as err:
            third = f"failed on attempt {err.attempt}: {err.cause}"
        return [first, await second, third]


@workflow.defn(name="Lookups")
class LookupsChanged:
    @workflow.run
    async def run(self, key: str) -> list[Any]:
        first = await workflow.execute_local_activity(
            lookup_other, key, start_to_close_timeout=T
        )
        return [first]


def run_locally(request: LocalActivityRequest) -> LocalActivityOutcome:
    """What the worker would do: ok for anything but "x", which fails on attempt 3."""
    (key,) = codec.decode(request.input)
    if key == "x":
        return LocalActivityOutcome(
            request.seq, 3, failure=to_failure(ApplicationError("no x", type="NoX"))
        )
    return LocalActivityOutcome(request.seq, 1, result=codec.encode(key.upper()))


def full_run() -> Sim:
    sim = Sim(Lookups, "ab")
    first = sim.activate(local=run_locally)
    assert [type(c) for c in first] == [
        cmd.RecordLocalActivityMarker, cmd.StartTimer, cmd.RecordLocalActivityMarker
    ]
    sim.fire_timer(1)
    last = sim.activate(local=run_locally)
    assert [type(c) for c in last] == [cmd.RecordLocalActivityMarker, cmd.CompleteWorkflow]
    return sim


def test_markers_record_results_failures_and_attempts() -> None:
    sim = full_run()
    markers = [e for e in sim.events if isinstance(e, ev.MarkerRecorded)]
    assert [(m.marker_name, m.activity_id, m.activity_type, m.attempt) for m in markers] == [
        ("core_local_activity", 1, "lookup", 1),
        ("core_local_activity", 2, "lookup", 1),
        ("core_local_activity", 3, "lookup", 3),
    ]
    assert codec.decode(markers[0].result) == "AB"
    assert markers[2].failure["type"] == "NoX" and markers[2].result == b""
    done = sim.events[-1]
    assert isinstance(done, ev.WorkflowExecutionCompleted)
    assert codec.decode(done.result) == [
        "AB", "AB!", "failed on attempt 3: no x"
    ]


def test_replay_resolves_from_the_markers_without_asking_the_worker() -> None:
    sim = full_run()
    machine, commands = replay(Lookups, sim.events)
    assert commands == [] and machine.closed
    assert machine.local_requests() == []


def test_a_marker_survives_the_stream_form() -> None:
    sim = full_run()
    marker = next(e for e in sim.events if isinstance(e, ev.MarkerRecorded))
    assert ev.encode_event(marker) == {
        "id": str(marker.event_id), "type": "MarkerRecorded", "ts": str(marker.timestamp),
        "marker_name": "core_local_activity", "activity_id": "1",
        "activity_type": "lookup", "attempt": "1", "result": codec.encode("AB"),
    }
    for event in sim.events:
        assert ev.decode_event({k.encode(): v if isinstance(v, bytes) else v.encode()
                                for k, v in ev.encode_event(event).items()}) == event


def test_changing_the_local_activity_type_is_non_determinism() -> None:
    sim = full_run()
    with pytest.raises(NondeterminismError, match="'lookup' but workflow code asked for"):
        replay(LookupsChanged, sim.events)


def test_a_live_activation_waits_for_the_worker() -> None:
    sim = Sim(Lookups, "ab")
    commands = sim.machine.activate(sim.events, sim.now_ms)
    assert commands == []
    (request,) = sim.machine.local_requests()
    assert (request.seq, request.activity_type, codec.decode(request.input)) == (
        1, "lookup", ["ab"]
    )
    assert request.options["start_to_close_ms"] == 5000
    assert request.options["retry"]["maximum_attempts"] == 0


def test_a_cancelled_local_activity_records_nothing() -> None:
    @workflow.defn(name="CancelLocal")
    class CancelLocal:
        @workflow.run
        async def run(self) -> str:
            future = workflow.start_local_activity(lookup, "a", start_to_close_timeout=T)
            future.cancel()
            try:
                await future
            except asyncio.CancelledError:
                return "dropped"
            return "ran"

    sim = Sim(CancelLocal)
    commands = sim.activate()  # no local activity asked of the worker
    assert commands == [cmd.CompleteWorkflow(codec.encode("dropped"))]
    machine, again = replay(CancelLocal, sim.events)
    assert again == [] and machine.closed


def test_a_local_activity_needs_a_timeout() -> None:
    @workflow.defn(name="NoTimeout")
    class NoTimeout:
        @workflow.run
        async def run(self) -> None:
            await workflow.execute_local_activity(lookup, "a")

    sim = Sim(NoTimeout)
    with pytest.raises(Exception, match="start_to_close_timeout or schedule_to_close"):
        sim.activate()
