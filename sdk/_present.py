"""How workflows, events and payloads read for people: what the CLI (sdk/cli/) and the web
UI (sdk/ui/) both print. One module so that both show the same times, statuses and JSON,
and so that neither has to import the other (the UI runs without the CLI's libraries
doing anything, the CLI without the UI's extra installed).

Nothing here talks to a server; everything is a pure function of decoded values.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from engine.schedule_spec import ScheduleSpec
from sdk.client.types import HistoryEvent

# --- times --------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """A time for JSON output: ISO 8601 with milliseconds and its UTC offset."""
    return value.isoformat(timespec="milliseconds") if value is not None else None


def local_time(value: datetime | None) -> str:
    """A time for people: the local date and clock time to the millisecond."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def clock_time(value: datetime) -> str:
    """The local clock time alone, for rows whose date a caption gives once."""
    return value.astimezone().strftime("%H:%M:%S.%f")[:-3]


# --- statuses -----------------------------------------------------------------------------

#: Colour of each workflow status in the CLI's tables (rich style names); the UI's
#: stylesheet has the same meaning per `status-<STATUS>` class.
STATUS_STYLE = {
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELED": "yellow",
    "TERMINATED": "red",
    "TIMED_OUT": "red",
    "CONTINUED_AS_NEW": "blue",
}


def status_text(status: object) -> str:
    """A status as it is shown: its plain name (`CANCELED`), also for enum members."""
    return status.value if isinstance(status, Enum) else str(status)


# --- payloads and events ------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):  # a timeout: seconds
        return value.total_seconds()
    if isinstance(value, bytes | bytearray):
        # Payloads the codec could not decode: keep them, losslessly.
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, Enum):
        return value.value
    return repr(value)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """Decoded payloads (or any document) as JSON text: times as `iso`, undecodable
    bytes as {"base64": ...}, never an error for an odd value."""
    return json.dumps(value, default=_json_default, indent=indent, ensure_ascii=False)


def pretty(value: Any) -> str:
    """A payload for reading: indented JSON."""
    return to_json(value, indent=2)


def event_json(event: HistoryEvent) -> dict[str, Any]:
    """An event as the JSON documents print it (`workflow show -o json`)."""
    return {
        "event_id": event.event_id,
        "type": event.type,
        "timestamp": iso(event.timestamp),
        "attributes": event.attributes,
    }


#: Attributes left out of one-line event summaries (JSON output has them): long, and
#: rarely what one reads a history for. `now` is the event's time again, in epoch ms;
#: `first_execution_run_id` is the run id again until a continue-as-new (whose
#: `continued_run_id` is shown).
SUMMARY_HIDDEN = frozenset({"options", "history_version", "now", "first_execution_run_id"})


def short(value: Any, limit: int = 60) -> str:
    """A value in a few words: a failure document by its message, long text cut."""
    if isinstance(value, dict) and "message" in value:
        value = value["message"]  # a failure document: its message says it all
    text = value if isinstance(value, str) else to_json(value, indent=None)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_fields(event: HistoryEvent) -> list[tuple[str, Any]]:
    """The attributes worth a glance, in history order (empty values left out)."""
    return [
        (k, v)
        for k, v in event.attributes.items()
        if v not in ("", None, {}, []) and k not in SUMMARY_HIDDEN
    ]


def event_details(event: HistoryEvent) -> str:
    """One line of an event's attributes: `name=value ...`."""
    return " ".join(f"{k}={short(v)}" for k, v in summary_fields(event))


def spec_text(spec: ScheduleSpec) -> str:
    """A schedule spec in one line, for the CLI and the UI."""
    parts = [f"cron {c!r}" for c in spec.cron_expressions]
    # A calendar in its cron form (its day of month and day of week must both match).
    parts += [f"calendar {c.cron()!r}" for c in spec.calendars]
    parts += [f"every {i.every}" + (f" +{i.offset}" if i.offset else "") for i in spec.intervals]
    if spec.time_zone_name:
        parts.append(f"in {spec.time_zone_name}")
    return ", ".join(parts)
