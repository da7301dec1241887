"""`redurable workflow update ID NAME --input ...` against a worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cli_support import Cli, assert_one_line_error, cli, cli_worker

pytestmark = [pytest.mark.integration]
__all__ = ["cli"]  # the fixture, used by name


@pytest.fixture
def counter_worker(cli: Cli) -> Iterator[None]:
    with cli_worker(cli, "tests.integration.update_workflows", "uq",
                    f"test-update-worker-{cli.prefix}"):
        yield


@pytest.mark.timeout(120)
def test_cli_update(cli: Cli, counter_worker: None) -> None:
    started = cli.json("workflow", "start", "Counter", "-q", "uq", "--id", "count-1")
    assert started["workflow_id"] == "count-1"
    done = cli("workflow", "update", "count-1", "add", "--input", "5", "--update-id", "u1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    # The same update id again: applied once, same result.
    again = cli.json("workflow", "update", "count-1", "add", "-i", "5", "--update-id", "u1")
    assert again == {"workflow_id": "count-1", "update": "add", "result": 5}
    assert cli.json("workflow", "update", "count-1", "bump", "-i", "0",
                    "--timeout", "20")["result"] == 6
    assert_one_line_error(cli("workflow", "update", "count-1", "nope"),
                          "was rejected", "nope")
    shown = cli("workflow", "show", "count-1")
    assert "WorkflowExecutionUpdateAccepted" in shown.stdout
    assert "WorkflowExecutionUpdateCompleted" in shown.stdout
    assert cli.json("workflow", "signal", "count-1", "finish")["sent"] is True
    assert_one_line_error(cli("workflow", "update", "count-1", "add", "-i", "1"), "not running")
