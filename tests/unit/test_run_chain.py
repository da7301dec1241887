"""engine/cron.py and engine/run_chain.py without a server: cron expressions through
cronsim, next fire times, the options of a cron start, and when a cron chain goes on."""

from __future__ import annotations

import pytest

from engine.cron import check_cron_schedule, next_fire_ms
from engine.errors import InvalidArgumentError
from engine.run_chain import CronFire, check_run_id, cron_fires, cron_goes_on, cron_start_options
from engine.start_options import StartOptions

MINUTE = 60_000


def test_next_fire_is_strictly_after() -> None:
    assert next_fire_ms("*/5 * * * *", 0) == 5 * MINUTE
    assert next_fire_ms("*/5 * * * *", 5 * MINUTE) == 10 * MINUTE
    assert next_fire_ms("*/5 * * * *", 5 * MINUTE - 1) == 5 * MINUTE
    assert next_fire_ms("* * * * * *", 1000) == 2000  # seconds first: cronsim's 6 fields
    assert next_fire_ms("* * * * * *", 1500) == 2000


@pytest.mark.parametrize("bad", ["", "  ", "61 * * * *", "* * *", "every day", 5, None])
def test_bad_expressions_are_clear_errors(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="cron_schedule"):
        check_cron_schedule(bad)


def test_a_cron_start_waits_for_its_first_cron_time() -> None:
    assert cron_start_options("") == {}
    options = cron_start_options("*/5 * * * *", now_ms=MINUTE)
    assert options == {"cron_schedule": "*/5 * * * *", "first_task_backoff_ms": 4 * MINUTE}
    doc = StartOptions(**options, run_retention_ms=0).to_json()
    assert '"cron":"*/5 * * * *"' in doc and '"backoff_ms":240000' in doc
    assert '"retention_ms":0' in doc


def test_which_closes_a_cron_chain_goes_on_after() -> None:
    assert cron_goes_on("COMPLETED", None) and cron_goes_on("FAILED", b"{}")
    assert cron_goes_on("TIMED_OUT", b'{"timeout_type":"run"}')
    assert not cron_goes_on("TIMED_OUT", b'{"timeout_type":"execution"}')
    assert not cron_goes_on("TERMINATED", None) and not cron_goes_on("CANCELED", None)


def test_cron_fires_from_a_timer_reply() -> None:
    assert cron_fires([0, -1, -1]) == []  # a library from before cron
    reply = [1, -1, -1, [[b"wf", b"r1", b"* * * * *", b"1234"]]]
    assert cron_fires(reply) == [CronFire("wf", "r1", "* * * * *", 1234)]


@pytest.mark.parametrize("bad", ["", "a:history", "x" * 65, "a b", "{1}"])
def test_run_ids_name_no_other_key(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        check_run_id(bad)
    assert check_run_id("0123456789abcdef0123456789abcdef")
