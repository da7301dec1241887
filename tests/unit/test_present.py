"""sdk/_present.py: what the CLI and the web UI both print, and that neither imports the
other to get it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from enum import StrEnum

from sdk._present import event_details, event_json, iso, local_time, short, status_text, to_json
from sdk.client.types import HistoryEvent

T = datetime(2026, 5, 17, 8, 30, 1, 234567, tzinfo=UTC)


def test_times() -> None:
    assert iso(T) == "2026-05-17T08:30:01.234+00:00"
    assert iso(None) is None
    assert local_time(T) == T.astimezone().strftime("%Y-%m-%d %H:%M:%S.234")
    assert local_time(None) == ""


def test_statuses_show_their_plain_name() -> None:
    class Status(StrEnum):  # like the client's WorkflowExecutionStatus
        CANCELED = "CANCELED"

    assert status_text(Status.CANCELED) == "CANCELED"
    assert status_text("RUNNING") == "RUNNING"


def test_payloads_and_events() -> None:
    assert to_json({"t": T, "raw": b"\x00\x01"}, indent=None) == (
        '{"t": "2026-05-17T08:30:01.234+00:00", "raw": {"base64": "AAE="}}'
    )
    assert short({"message": "boom", "type": "X"}) == "boom"
    assert short("x" * 100).endswith("…") and len(short("x" * 100)) == 60
    event = HistoryEvent(3, "ActivityTaskScheduled", T, {
        "activity_id": 1, "input": [3], "options": {"long": True}, "empty": ""})  # fmt: skip
    assert event_details(event) == "activity_id=1 input=[3]"
    assert event_json(event)["timestamp"] == "2026-05-17T08:30:01.234+00:00"


def test_the_ui_does_not_import_the_cli() -> None:
    code = (
        "import sys, sdk.ui.app, sdk.ui.views, sdk.ui.server; "
        "print(sorted(m for m in sys.modules if m == 'sdk.cli' or m.startswith('sdk.cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
