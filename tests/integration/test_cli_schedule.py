"""`redurable schedule create|list|describe|trigger|pause|unpause|delete` as users run it
(subprocesses, real server)."""

from __future__ import annotations

import pytest

from tests.integration.test_cli import Cli, cli  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)  # some 15 CLI processes, each a Python start-up
def test_schedule_commands(cli: Cli) -> None:  # noqa: F811
    assert "No schedules." in cli("schedule", "list").stdout
    made = cli("schedule", "create", "nightly", "--workflow", "Tick", "-q", "q",
               "--cron", "0 3 * * *", "--time-zone", "Europe/Paris", "--input", '"n"',
               "--overlap", "BUFFER_ONE")
    assert made.returncode == 0, made.stderr
    assert "Created schedule nightly, next fire" in made.stdout
    doc = cli.json("schedule", "describe", "nightly")
    assert doc["workflow_type"] == "Tick" and doc["args"] == ["n"]
    assert doc["cron_expressions"] == ["0 3 * * *"] and doc["time_zone"] == "Europe/Paris"
    assert doc["overlap"] == "BUFFER_ONE" and len(doc["next_action_times"]) == 10

    listed = cli.json("schedule", "list")["schedules"]
    assert [s["schedule_id"] for s in listed] == ["nightly"]
    assert "nightly" in cli("schedule", "list").stdout
    assert "Europe/Paris" in cli("schedule", "describe", "nightly").stdout

    assert cli("schedule", "pause", "nightly", "--note", "maintenance").returncode == 0
    doc = cli.json("schedule", "describe", "nightly")
    assert doc["paused"] and doc["note"] == "maintenance" and doc["next_action_times"] == []
    assert cli("schedule", "unpause", "nightly").returncode == 0
    assert not cli.json("schedule", "describe", "nightly")["paused"]
    assert cli("schedule", "trigger", "nightly").returncode == 0
    assert cli.json("schedule", "describe", "nightly")["num_buffered"] == 1

    again = cli("schedule", "create", "nightly", "-w", "Tick", "-q", "q", "--interval", "5")
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = cli("schedule", "create", "x", "-w", "Tick", "-q", "q", "--cron", "nope")
    assert bad.returncode == 1 and "bad cron expression" in bad.stderr
    assert "Traceback" not in bad.stderr
    neither = cli("schedule", "create", "x", "-w", "Tick", "-q", "q")
    assert neither.returncode == 1 and "--cron or --interval" in neither.stderr

    assert cli("schedule", "delete", "nightly").returncode == 0
    gone = cli("schedule", "describe", "nightly")
    assert gone.returncode == 1 and "not found" in gone.stderr
