"""History events and commands: the stream-entry form round trips, reads as plain
text, and tolerates what older or newer engines wrote."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from engine import commands as cmd
from engine import events as ev
from engine.store import decode_entries

OPTIONS = {"retry": {"initial_interval_ms": 1000, "maximum_attempts": 0}, "start_to_close_ms": 5}
FAILURE = {"message": "boom", "type": "Boom", "kind": "application", "non_retryable": False}

SAMPLES: list[ev.Event] = [
    ev.WorkflowExecutionStarted(1, 1000, "Order", "orders", b"\x91\x03", "run-1", 2, 1),
    ev.WorkflowTaskCompleted(2, 1001, worker="host:1:abc", now=1001, flags="a,b"),
    ev.ActivityTaskScheduled(3, 1001, 1, "charge_customer", b"\x91\x03", "orders", OPTIONS),
    ev.ActivityTaskCompleted(4, 1002, 1, b"\xc0", 1),
    ev.ActivityTaskFailed(5, 1003, 2, FAILURE, 3),
    ev.ActivityTaskTimedOut(6, 1004, 3, {**FAILURE, "kind": "timeout"}, 1),
    ev.ActivityTaskCanceled(7, 1005, 4),
    ev.TimerStarted(8, 1006, 1, 60000),
    ev.TimerFired(9, 1007, 1),
    ev.TimerCanceled(10, 1008, 2),
    ev.WorkflowExecutionSignaled(11, 1009, "picked_up", b"\x90"),
    ev.WorkflowExecutionCancelRequested(12, 1010, "user asked"),
    ev.WorkflowExecutionCompleted(13, 1011, b"\xa9Completed"),
    ev.WorkflowExecutionFailed(14, 1012, FAILURE),
    ev.WorkflowExecutionCanceled(15, 1013),
    ev.WorkflowExecutionContinuedAsNew(16, 1014, "run-2", b"\x91\x04"),
    ev.WorkflowExecutionTerminated(17, 1015, "operator"),
    ev.MarkerRecorded(18, 1016, "core_patch", "send-sms", 1),
    ev.WorkflowExecutionTimedOut(19, 1017, "run"),
    ev.WorkflowExecutionUpdateAdmitted(20, 1018, "tip-1", "add_tip", b"\x91\x05"),
    ev.WorkflowExecutionUpdateAccepted(20, 1018, "tip-1", "add_tip", b"\x91\x05"),
    ev.WorkflowExecutionUpdateCompleted(21, 1019, "tip-1", result=b"\x05"),
    ev.WorkflowExecutionUpdateCompleted(22, 1020, "tip-2", failure=FAILURE),
    ev.UpsertWorkflowSearchAttributes(
        20, 1018, {"CustomerId": ["KEYWORD", "c-1"], "Amount": ["INT", "5"], "Old": None}),
    ev.WorkflowExecutionStarted(1, 1000, "Order", "orders", b"\x91\x03", "run-3", 1, 3,
                                first_execution_run_id="run-1", continued_run_id="run-2",
                                memo=b"\x81\xa1k\xa1v", execution_timeout_ms=60000,
                                run_timeout_ms=30000, task_timeout_ms=10000,
                                search_attributes={"CustomerId": ["KEYWORD", "c-1"]}),
    ev.WorkflowExecutionStarted(1, 1000, "Child", "orders", b"\x90", "run-c", 1, 1,
                                parent_workflow_id="order-1", parent_run_id="run-1"),
    ev.StartChildWorkflowExecutionInitiated(20, 1018, 1, "child-1", "Child", "orders",
                                            b"\x90", "run-c", "ABANDON", {"exec_ms": 5},
                                            b"\x80"),
    ev.ChildWorkflowExecutionStarted(21, 1019, 1, "child-1", "run-c"),
    ev.StartChildWorkflowExecutionFailed(22, 1020, 2, "child-2", "WORKFLOW_ALREADY_EXISTS",
                                         "run-x"),
    ev.ChildWorkflowExecutionCompleted(23, 1021, 1, "child-1", "run-c", b"\x03"),
    ev.ChildWorkflowExecutionFailed(24, 1022, 3, "child-3", "run-d", FAILURE),
    ev.ChildWorkflowExecutionCanceled(25, 1023, 4, "child-4", "run-e"),
    ev.ChildWorkflowExecutionTerminated(26, 1024, 5, "child-5", "run-f",
                                        {**FAILURE, "kind": "terminated"}),
    ev.ChildWorkflowExecutionTimedOut(27, 1025, 6, "child-6", "run-g",
                                      {**FAILURE, "kind": "workflow_timeout"}),
    ev.SignalExternalWorkflowExecutionInitiated(28, 1026, 1, "order-9", "picked_up", b"\x90"),
    ev.ExternalWorkflowExecutionSignaled(29, 1027, 1, "order-9", "run-9"),
    ev.SignalExternalWorkflowExecutionFailed(30, 1028, 2, "gone",
                                             "EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"),
    ev.RequestCancelExternalWorkflowExecutionInitiated(31, 1029, 3, "order-9", "", 1),
    ev.ExternalWorkflowExecutionCancelRequested(32, 1030, 3, "order-9", "run-9"),
    ev.RequestCancelExternalWorkflowExecutionFailed(33, 1031, 4, "gone",
                                                    "EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"),
]


def as_stream_fields(event: ev.Event) -> dict[bytes, bytes]:
    """What XRANGE returns for the entry: every field and value as bytes."""
    return {
        k.encode(): v if isinstance(v, bytes) else v.encode()
        for k, v in ev.encode_event(event).items()
    }


def test_every_event_type_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(ev.EVENT_TYPES.values())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_event_round_trip(event: ev.Event) -> None:
    assert ev.decode_event(as_stream_fields(event)) == event


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_lua_reply_form_round_trip(event: ev.Event) -> None:
    """Inside a Function reply (RESP2), an entry's fields come as a flat list."""
    flat: list[bytes] = []
    for k, v in as_stream_fields(event).items():
        flat += [k, v]
    [(sid, decoded)] = decode_entries([(b"1-0", flat)])
    assert sid == b"1-0"
    assert decoded == event


def _netstring_pack(parts: list[bytes]) -> bytes:
    """As 00_common.lua's pack_strings writes them (a task's event, a buffered one)."""
    return b"".join(str(len(p)).encode() + b":" + p for p in parts)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_packed_forms_round_trip(event: ev.Event) -> None:
    """The event a workflow task carries (packed_event: id, type, ts, fields...) and a
    buffered one (type, ts, fields...; numbered when read)."""
    fields = as_stream_fields(event)
    flat: list[bytes] = []
    for name, value in fields.items():
        if name not in (b"id", b"type", b"ts"):
            flat += [name, value]
    head = [fields[b"type"], fields[b"ts"]]
    assert ev.decode_packed_event(_netstring_pack([fields[b"id"], *head, *flat])) == event
    buffered = _netstring_pack([*head, *flat])
    assert ev.decode_buffered_event(buffered, event.event_id) == event


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_the_msgpack_packed_event_reads_as_its_netstrings_did(event: ev.Event) -> None:
    """packed_event on a real server: a MessagePack array, id and ts integers, the rest
    strings; entries of a library before it (netstrings) still read (a rolling deploy)."""
    fields = as_stream_fields(event)
    flat = [v for k, v in fields.items() if k not in (b"id", b"type", b"ts") for v in (k, v)]
    parts = [int(fields[b"id"]), fields[b"type"], int(fields[b"ts"]), *flat]
    packed = msgpack.packb(parts)
    assert packed[:1] >= b"\x90"  # never a digit: told from netstrings by its first byte
    assert ev.decode_packed_event(packed) == event
    old = _netstring_pack([fields[b"id"], fields[b"type"], fields[b"ts"], *flat])
    assert ev.decode_packed_event(old) == event


@pytest.mark.parametrize("data", [msgpack.packb({b"a": 1}), msgpack.packb([1, b"x"])[:-1],
                                  b"\xc1", msgpack.packb([1]) + b"extra"])
def test_a_malformed_msgpack_event_fails_as_a_value_error(data: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        ev.decode_packed_event(data)


def test_entry_reads_as_plain_text() -> None:
    fields = ev.encode_event(SAMPLES[2])
    assert fields == {
        "id": "3",
        "type": "ActivityTaskScheduled",
        "ts": "1001",
        "activity_id": "1",
        "activity_type": "charge_customer",
        "input": b"\x91\x03",
        "task_queue": "orders",
        "options": '{"retry":{"initial_interval_ms":1000,"maximum_attempts":0},'
        '"start_to_close_ms":5}',
    }
    failed = ev.encode_event(SAMPLES[4])
    assert failed["failure"] == (
        '{"message":"boom","type":"Boom","kind":"application","non_retryable":false}'
    )
    # Only user payloads are bytes.
    for event in SAMPLES:
        for name, value in ev.encode_event(event).items():
            hints = {f.name: f.type for f in dataclasses.fields(event)}
            assert isinstance(value, bytes) == (hints.get(name) == "bytes"), (event.type, name)


def test_missing_optional_fields_take_defaults() -> None:
    """An entry written before a field existed still decodes (older histories)."""
    fields = as_stream_fields(SAMPLES[0])
    del fields[b"history_version"], fields[b"attempt"]
    started = ev.decode_event(fields)
    assert isinstance(started, ev.WorkflowExecutionStarted)
    assert (started.attempt, started.history_version) == (1, 1)
    marker = ev.decode_event({b"id": b"2", b"type": b"WorkflowTaskCompleted", b"ts": b"5"})
    assert marker == ev.WorkflowTaskCompleted(2, 5)


def test_unknown_fields_are_ignored() -> None:
    """An entry with fields from a newer engine still decodes."""
    fields = as_stream_fields(SAMPLES[8])
    fields[b"from_the_future"] = b"1"
    assert ev.decode_event(fields) == SAMPLES[8]


@pytest.mark.parametrize(
    "fields",
    [
        {b"id": b"1", b"ts": b"1"},
        {b"id": b"1", b"type": b"NoSuchEvent", b"ts": b"1"},
        {b"id": b"x", b"type": b"TimerFired", b"ts": b"1", b"timer_id": b"1"},
        {b"id": b"1", b"type": b"TimerFired", b"ts": b"1"},
        {b"id": b"1", b"type": b"TimerFired", b"ts": b"1", b"timer_id": b"one"},
        {b"id": b"1", b"type": b"WorkflowExecutionFailed", b"ts": b"1", b"failure": b"{"},
        {b"id": b"1", b"type": b"\xff", b"ts": b"1"},
    ],
)
def test_malformed_entries(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(ev.EventDecodeError, match="malformed history entry"):
        ev.decode_event(fields)


def test_command_flags() -> None:
    commands = {n for n, c in ev.EVENT_TYPES.items() if c.is_command}
    assert commands == {
        "ActivityTaskScheduled",
        "ActivityTaskCanceled",
        "TimerStarted",
        "TimerCanceled",
        "WorkflowExecutionCompleted",
        "WorkflowExecutionFailed",
        "WorkflowExecutionCanceled",
        "WorkflowExecutionContinuedAsNew",
        "MarkerRecorded",
        "WorkflowExecutionUpdateAccepted",
        "WorkflowExecutionUpdateCompleted",
        "UpsertWorkflowSearchAttributes",
        "StartChildWorkflowExecutionInitiated",
        "SignalExternalWorkflowExecutionInitiated",
        "RequestCancelExternalWorkflowExecutionInitiated",
    }
    assert {
        "WorkflowExecutionCompleted",
        "WorkflowExecutionFailed",
        "WorkflowExecutionCanceled",
        "WorkflowExecutionContinuedAsNew",
        "WorkflowExecutionTerminated",
        "WorkflowExecutionTimedOut",
    } == ev.CLOSE_TYPES


def test_event_type_and_attributes() -> None:
    event = SAMPLES[7]
    assert event.type == "TimerStarted"
    assert event.attributes() == {"timer_id": 1, "duration_ms": 60000}


COMMANDS: list[cmd.Command] = [
    cmd.ScheduleActivity(1, "charge", b"\x90", "orders", OPTIONS),
    cmd.RequestCancelActivity(1),
    cmd.StartTimer(2, 1500),
    cmd.CancelTimer(2),
    cmd.CompleteWorkflow(b"\xc0"),
    cmd.FailWorkflow(FAILURE),
    cmd.CancelWorkflow(),
    cmd.ContinueAsNew(b"\x90", "run-2"),
    cmd.SetPatchMarker("send-sms"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_becomes_an_event_that_matches_it(command: cmd.Command) -> None:
    event_type, attrs = cmd.to_event(command)
    assert event_type.is_command
    event = event_type(event_id=9, timestamp=1, **attrs)
    assert cmd.matches(command, event)
    # Through the stream form as well.
    assert cmd.matches(command, ev.decode_event(as_stream_fields(event)))
    # A command never matches another kind of event.
    for other in COMMANDS:
        if type(other) is not type(command):
            other_type, other_attrs = cmd.to_event(other)
            assert not cmd.matches(command, other_type(event_id=9, timestamp=1, **other_attrs))


def test_matching_ignores_payloads_but_not_ids() -> None:
    scheduled = ev.ActivityTaskScheduled(3, 1, 1, "charge", b"\x91\x01", "orders", {})
    assert cmd.matches(cmd.ScheduleActivity(1, "charge", b"\x91\x02", "other", {"x": 1}), scheduled)
    assert not cmd.matches(cmd.ScheduleActivity(2, "charge", b"", "orders"), scheduled)
    assert not cmd.matches(cmd.ScheduleActivity(1, "refund", b"", "orders"), scheduled)
    assert cmd.matches(cmd.StartTimer(1, 5), ev.TimerStarted(4, 1, 1, 99999))
    assert not cmd.matches(cmd.StartTimer(2, 5), ev.TimerStarted(4, 1, 1, 5))


def test_patch_markers_match_by_patch_id_deprecated_or_not() -> None:
    marker = ev.MarkerRecorded(5, 1, "core_patch", "send-sms", 0)
    deprecated = ev.MarkerRecorded(5, 1, "core_patch", "send-sms", 1)
    for command in (cmd.SetPatchMarker("send-sms"), cmd.SetPatchMarker("send-sms", True)):
        assert cmd.matches(command, marker) and cmd.matches(command, deprecated)
    assert not cmd.matches(cmd.SetPatchMarker("other"), marker)
    # Another kind of marker (a later feature's) with the same details is not a patch.
    assert not cmd.matches(cmd.SetPatchMarker("send-sms"), ev.MarkerRecorded(5, 1, "x", "send-sms"))
    assert ev.encode_event(deprecated) == {
        "id": "5",
        "type": "MarkerRecorded",
        "ts": "1",
        "marker_name": "core_patch",
        "patch_id": "send-sms",
        "deprecated": "1",
    }


def test_describe_commands() -> None:
    assert cmd.describe(COMMANDS[0]) == "ScheduleActivity(activity_id=1, activity_type='charge')"
    assert cmd.describe(COMMANDS[2]) == "StartTimer(timer_id=2, duration_ms=1500)"
    assert cmd.describe(COMMANDS[6]) == "CancelWorkflow"
    assert cmd.describe(COMMANDS[8]) == "SetPatchMarker(patch_id='send-sms', deprecated=False)"


def test_encode_attributes_skips_missing() -> None:
    flat = ev.encode_attributes(ev.TimerStarted, {"timer_id": 1})
    assert flat == ["timer_id", "1"]


def test_logic_flags_read_as_recorded() -> None:
    flag = ev.WorkflowLogicFlag
    marks = {text: ev.WorkflowTaskCompleted(1, 1, flags=text).logic_flags
             for text in ("", "1", "1,2", "2,9", "a,b")}
    assert marks == {
        "": frozenset(),
        "1": {flag.STEP_PER_INPUT},
        "1,2": {flag.STEP_PER_INPUT, flag.CLOSE_DROP_RECORDED},
        "2,9": {flag.CLOSE_DROP_RECORDED},  # a number this code does not know: ignored
        "a,b": frozenset(),
    }
    assert ev.encode_logic_flags([flag.CLOSE_DROP_RECORDED, flag.STEP_PER_INPUT]) == "1,2"
    assert ev.encode_logic_flags([]) == ""
