"""The error tree and the wire form of failures (JSON documents with causes)."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest

from engine import errors
from engine.errors import (
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    CancelledError,
    ContinueAsNewError,
    FailureError,
    RedurableError,
    TerminatedError,
    failure_json,
    from_failure,
    parse_failure,
    to_failure,
)


def raised(exc: BaseException) -> BaseException:
    """The exception after a real raise, so it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def round_trip(exc: BaseException) -> FailureError:
    """Through JSON text, as it is stored in history and in the workflow hash."""
    return from_failure(parse_failure(failure_json(exc)))


def test_application_error_round_trip() -> None:
    exc = ApplicationError(
        "card declined", {"code": 51}, "retry later", type="Declined", non_retryable=True
    )
    back = round_trip(exc)
    assert isinstance(back, ApplicationError)
    assert (back.message, back.type, back.non_retryable) == ("card declined", "Declined", True)
    assert back.details == [{"code": 51}, "retry later"]
    assert str(back) == "card declined"


def test_application_error_without_type() -> None:
    back = round_trip(ApplicationError("plain"))
    assert isinstance(back, ApplicationError)
    assert back.type == "ApplicationError"
    assert back.non_retryable is False
    assert back.details == []


def test_activity_error_with_causes() -> None:
    root = ApplicationError("out of stock", type="OutOfStock")
    timeout = ActivityTimeoutError("too slow", timeout_type="heartbeat")
    timeout.__cause__ = root
    exc = ActivityError(
        "charge failed", activity_type="charge", activity_id=4, attempt=3, cause=timeout
    )
    back = round_trip(exc)
    assert isinstance(back, ActivityError)
    assert (back.activity_type, back.activity_id, back.attempt) == ("charge", 4, 3)
    assert isinstance(back.cause, ActivityTimeoutError)
    assert back.cause.timeout_type == "heartbeat"
    assert isinstance(back.cause.cause, ApplicationError)
    assert back.cause.cause.type == "OutOfStock"
    assert back.cause.cause.cause is None


@pytest.mark.parametrize(
    ("exc", "kind", "cls"),
    [
        (CancelledError(), "cancelled", CancelledError),
        (CancelledError("stop now"), "cancelled", CancelledError),
        (TerminatedError("operator"), "terminated", TerminatedError),
        (
            ActivityTimeoutError("slow", timeout_type="start_to_close"),
            "timeout",
            ActivityTimeoutError,
        ),
    ],
)
def test_kinds_round_trip(exc: FailureError, kind: str, cls: type[FailureError]) -> None:
    assert to_failure(exc)["kind"] == kind
    back = round_trip(exc)
    assert type(back) is cls
    assert str(back) == str(exc)


def test_any_exception_becomes_an_application_error() -> None:
    """A user's own exception keeps its class name as the type (for
    non_retryable_error_types), and comes back as an ApplicationError."""
    doc = to_failure(ValueError("bad value"))
    assert doc["type"] == "ValueError"
    assert doc["kind"] == "application"
    back = from_failure(doc)
    assert isinstance(back, ApplicationError)
    assert back.type == "ValueError"
    assert back.message == "bad value"


def test_empty_message_uses_the_type_name() -> None:
    assert to_failure(KeyError())["message"] == "KeyError"


def test_stack_travels_and_can_be_left_out() -> None:
    exc = raised(ApplicationError("with stack"))
    doc = to_failure(exc)
    assert "test_errors.py" in doc["stack"]
    assert from_failure(doc).stack == doc["stack"]
    assert "stack" not in to_failure(exc, with_stack=False)
    assert "stack" not in to_failure(ApplicationError("never raised"))


def test_stack_is_bounded() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ApplicationError("deep")
        deep(n - 1)

    try:
        deep(200)
    except ApplicationError as exc:
        assert len(to_failure(exc)["stack"]) <= 4000


def _without_carets(text: str) -> list[str]:
    return [line for line in text.splitlines() if set(line.strip()) - set("^~")]


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 10])
def test_stack_reads_as_format_tb_without_its_carets(depth: int) -> None:
    """format_stack leaves out only the caret lines that Python 3.11 computes by
    parsing each frame's source (the cost of a failed activity step), repeated frames
    of a recursion summed up as CPython does."""
    def recurse(n: int) -> None:
        if n == 0:
            values: dict[str, int] = {}
            values["missing"] += 1
        recurse(n - 1)

    try:
        recurse(depth)
    except KeyError as exc:
        expected = "".join(traceback.format_tb(exc.__traceback__))
        ours = errors.format_stack(exc.__traceback__)
        assert ours.splitlines() == _without_carets(expected)
        assert to_failure(exc)["stack"] == ours
    if depth >= 4:
        assert "[Previous line repeated" in ours


def test_stack_of_code_whose_source_is_gone() -> None:
    namespace: dict[str, Any] = {}
    exec(compile("def fail():\n    raise ValueError('x')\n", "<nowhere>", "exec"), namespace)
    try:
        namespace["fail"]()
    except ValueError as exc:
        stack = errors.format_stack(exc.__traceback__)
    assert stack.endswith('  File "<nowhere>", line 2, in fail\n')


def test_cause_chain_from_raise_from() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ApplicationError("outer") from inner
    except ApplicationError as exc:
        doc = to_failure(exc)
    assert doc["cause"]["type"] == "KeyError"
    assert isinstance(from_failure(doc).cause, ApplicationError)


def test_unjsonable_details_become_text() -> None:
    doc = to_failure(ApplicationError("x", object(), {1, 2}, [1, 2]))
    json.dumps(doc)
    assert doc["details"][2] == [1, 2]
    assert doc["details"][1] == "{1, 2}"
    assert doc["details"][0].startswith("<object object")


def test_deep_cause_chain_is_cut() -> None:
    """The documented depth limit: a long chain stays a bounded document."""
    exc: BaseException = ApplicationError("level 0")
    for level in range(1, 200):
        outer = ApplicationError(f"level {level}")
        outer.__cause__ = exc
        exc = outer
    doc = to_failure(exc)
    depth = 0
    while "cause" in doc:
        doc = doc["cause"]
        depth += 1
    assert depth < 50
    json.dumps(to_failure(exc))


def test_cyclic_cause_chain_terminates() -> None:
    a = ApplicationError("a")
    b = ApplicationError("b")
    a.__cause__ = b
    b.__cause__ = a
    doc = to_failure(a)
    assert doc["cause"]["message"] == "b"
    from_failure(json.loads(json.dumps(doc)))


def test_parse_failure_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_failure("[1, 2]")
    with pytest.raises(ValueError):
        parse_failure(b"{not json")
    assert parse_failure(b'{"message": "m"}') == {"message": "m"}


def test_from_failure_of_a_minimal_document() -> None:
    back = from_failure({})
    assert isinstance(back, ApplicationError)
    assert back.message == ""


# --- the error tree ---------------------------------------------------------------------


def all_error_classes() -> list[type[BaseException]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    ]


def test_one_root() -> None:
    for cls in all_error_classes():
        if cls is ContinueAsNewError:
            continue
        assert issubclass(cls, RedurableError), cls


def test_control_flow_is_not_an_exception() -> None:
    """`except Exception:` in user code cannot swallow continue-as-new."""
    assert issubclass(ContinueAsNewError, BaseException)
    assert not issubclass(ContinueAsNewError, Exception)
    assert ContinueAsNewError([1, 2]).input == [1, 2]


def test_builtins_are_not_shadowed() -> None:
    import builtins

    for cls in all_error_classes():
        assert not hasattr(builtins, cls.__name__), cls


def test_wire_errors_are_failure_errors() -> None:
    for cls in (
        ApplicationError,
        CancelledError,
        TerminatedError,
        ActivityTimeoutError,
        ActivityError,
    ):
        assert issubclass(cls, FailureError)


def test_client_error_messages() -> None:
    assert "order-3" in str(errors.WorkflowNotFoundError("order-3"))
    started = errors.WorkflowAlreadyStartedError("order-3", "run-9")
    assert (started.workflow_id, started.run_id) == ("order-3", "run-9")
    assert "run-9" in str(started)
    not_running = errors.WorkflowNotRunningError("order-3", "COMPLETED")
    assert not_running.status == "COMPLETED"
    unknown = errors.UnknownQueryError("nope", ["get_status", "progress"])
    assert unknown.name == "nope"
    assert "get_status, progress" in str(unknown)
    assert "known: none" in str(errors.UnknownQueryError("nope", []))
    cause = CancelledError()
    failure = errors.WorkflowFailureError("workflow x canceled", cause=cause)
    assert failure.cause is cause


def test_failure_json_is_compact_json(tmp_path: Any) -> None:
    text = failure_json(ApplicationError("m", type="T"))
    assert " " not in text.replace("m", "")
    assert json.loads(text)["type"] == "T"


def test_a_cause_from_the_wire_keeps_its_stack() -> None:
    """An activity's failure is rebuilt in the workflow (from_failure) and raised as
    the cause of an ActivityError; the workflow's failure then stores that chain again.
    The cause was never raised there, so it has no traceback: its stack from the wire
    is kept (it was dropped, so `err.cause.cause.stack` was None)."""
    def activity_code() -> None:
        raise ValueError("bad value")

    try:
        activity_code()
    except ValueError as exc:
        activity_failure = to_failure(exc)
    assert "activity_code" in activity_failure["stack"]
    cause = from_failure(activity_failure)
    workflow_error = raised(
        ActivityError("activity failed", activity_type="a", activity_id=1, attempt=1,
                      cause=cause)
    )
    again = round_trip(workflow_error)
    assert isinstance(again.cause, ApplicationError)
    assert again.cause.stack == activity_failure["stack"]
    assert again.stack is not None and "raised" in again.stack  # its own traceback
