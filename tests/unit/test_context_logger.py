"""activity.logger and workflow.logger (sdk/_log.py ContextLogger): stdlib-compatible
calls, ids on every record, to stdlib handlers and to structlog, and silence on replay."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from sdk import activity
from sdk._log import ContextLogger


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def handler() -> Iterator[_Records]:
    h = _Records()
    log = logging.getLogger("test.context")
    log.addHandler(h)
    log.setLevel(logging.DEBUG)
    try:
        yield h
    finally:
        log.removeHandler(h)
        log.setLevel(logging.NOTSET)


def test_stdlib_calls_records_and_structlog(handler: _Records) -> None:
    ids: dict[str, Any] | None = {"workflow_id": "w-1", "attempt": 2}
    logger = ContextLogger("test.context", lambda: ids)
    assert isinstance(logger, logging.LoggerAdapter)
    with structlog.testing.capture_logs() as logs:
        logger.info("charged %s for %d", "c-1", 3, extra={"customer": "c-1"})
        logger.warning("%(a)s and %(b)s", {"a": 1, "b": 2})
        logger.debug("structlog style", step=4)
        logger.log(logging.ERROR, "one %s short %s", "arg")  # a bad format is still logged
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    assert [r.getMessage() for r in handler.records[:3]] == [
        "charged c-1 for 3", "1 and 2", "structlog style"]
    first = handler.records[0]
    assert (first.__dict__["workflow_id"], first.__dict__["attempt"]) == ("w-1", 2)
    assert first.__dict__["customer"] == "c-1"
    assert first.funcName == "test_stdlib_calls_records_and_structlog"
    assert handler.records[2].__dict__["step"] == 4
    assert handler.records[4].exc_info is not None
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events[:3] == [("charged c-1 for 3", "info"), ("1 and 2", "warning"),
                          ("structlog style", "debug")]
    assert events[3][0].startswith("one %s short %s")
    assert logs[0]["workflow_id"] == "w-1" and logs[0]["customer"] == "c-1"
    assert logs[4]["exc_info"] is True
    ids = None  # a replaying workflow: nothing anywhere
    with structlog.testing.capture_logs() as logs:
        logger.info("replayed")
    assert logs == []
    assert len(handler.records) == 5


def test_level_of_the_stdlib_logger_is_the_users(handler: _Records) -> None:
    logging.getLogger("test.context").setLevel(logging.WARNING)
    logger = ContextLogger("test.context", dict)
    with structlog.testing.capture_logs() as logs:
        logger.info("below the stdlib level")
    assert handler.records == []
    assert [e["event"] for e in logs] == ["below the stdlib level"]  # structlog's own level


def test_no_stdlib_handler_means_no_last_resort_copy(capsys: pytest.CaptureFixture[str]) -> None:
    """With no handler configured the stdlib prints warnings through its last-resort
    handler: a bare second copy of the structlog line. None is sent then."""
    unhandled = logging.getLogger("test.unhandled")
    unhandled.propagate = False  # pytest's own handlers on the root do not count here
    try:
        logger = ContextLogger("test.unhandled", dict)
        with structlog.testing.capture_logs() as logs:
            logger.warning("only once")
        assert [e["event"] for e in logs] == ["only once"]
        assert capsys.readouterr().err == ""
    finally:
        unhandled.propagate = True


def test_activity_logger_outside_an_activity_has_no_ids(handler: _Records) -> None:
    assert activity.in_activity() is False
    with structlog.testing.capture_logs() as logs:
        activity.logger.info("outside")
    assert logs[0]["event"] == "outside"
    assert "workflow_id" not in logs[0]
