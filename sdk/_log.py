"""Logging: structlog, with workflow/activity context bound from contextvars."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog


def configure_logging(*, json: bool = False, level: str = "INFO") -> None:
    """Render logs as JSON lines (for log shippers) or for a console; `workflow_id`,
    `run_id`, `activity`, `attempt` and `task_queue` come from contextvars."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """`activity.logger` and `workflow.logger`: a stdlib `logging.LoggerAdapter`
    (`%`-args, `extra=`, `exc_info=`, `isEnabledFor`, ...) whose records carry the ids
    of the activity or workflow that logs (as record attributes: `%(workflow_id)s` in a
    formatter). Each line goes to the stdlib logger (so handlers the user configured see
    it, at the level they set) and to structlog (our console or JSON output, at its own
    level), unless structlog is itself routed through the stdlib, where it would be
    twice. `fields()` gives the ids, or None to drop the line (a workflow replaying)."""

    def __init__(self, name: str, fields: Callable[[], dict[str, Any] | None]) -> None:
        super().__init__(logging.getLogger(name), {})
        self._fields = fields
        self._structlog = structlog.get_logger(name)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        ids = self._fields()
        if ids is None:
            return
        # stdlib keywords; any other keyword is a field, structlog's way (`step=3`).
        options = {k: kwargs.pop(k) for k in _STDLIB_KEYWORDS if k in kwargs}
        extra = {**ids, **(options.pop("extra", None) or {}), **kwargs}
        # Without any handler the stdlib would print through its last resort handler,
        # a second, bare copy of the structlog line.
        text, fits = _formatted(msg, args)
        if self.logger.isEnabledFor(level) and self.logger.hasHandlers():
            # One frame more than a plain Logger call: the record names the caller.
            options["stacklevel"] = int(options.get("stacklevel", 1)) + 1
            # Arguments that do not fit the format would fail in the handler (raise,
            # under pytest): the record gets the text that says so instead.
            self.logger.log(level, *((msg, *args) if fits else (text,)), extra=extra, **options)
        if _structlog_via_stdlib():
            return
        if options.get("exc_info"):
            extra["exc_info"] = options["exc_info"]
        emit = getattr(self._structlog, logging.getLevelName(level).lower(), None)
        (emit or self._structlog.info)(text, **extra)


_STDLIB_KEYWORDS = ("exc_info", "stack_info", "stacklevel", "extra")


def _structlog_via_stdlib() -> bool:
    factory = structlog.get_config().get("logger_factory")
    return isinstance(factory, structlog.stdlib.LoggerFactory)


def _formatted(msg: object, args: tuple[Any, ...]) -> tuple[str, bool]:
    """`msg % args` as the stdlib does it, and whether they fit: a line whose arguments
    do not fit its format is still logged (with the arguments shown) rather than
    failing the caller."""
    if not args:
        return str(msg), True
    # One mapping is for "%(name)s" formats, as in logging.
    values: object = args[0] if len(args) == 1 and isinstance(args[0], dict) else args
    try:
        return str(msg) % values, True
    except (TypeError, ValueError, KeyError) as exc:
        return f"{msg} {args!r} (log arguments do not fit the format: {exc})", False
