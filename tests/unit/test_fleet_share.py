"""sdk/worker/fleet.py: a worker's share of a chore the fleet does together."""

from __future__ import annotations

import pytest

from sdk.worker.fleet import fleet_share


def test_a_small_fleet_takes_every_turn_steadily() -> None:
    for jitter in (0.0, 0.5, 0.999):
        assert fleet_share(1.0, 1, 4, jitter) == 1.0
        assert fleet_share(1.0, 4, 4, jitter) == 1.0  # up to `takers` workers
        assert fleet_share(5.0, 2, 2, jitter) == 5.0


def test_a_lone_worker_is_spread_only_when_asked() -> None:
    assert fleet_share(0.1, 1, 2, 0.0, spread_alone=True) == pytest.approx(0.05)
    assert fleet_share(0.1, 1, 2, 0.5, spread_alone=True) == pytest.approx(0.1)
    assert fleet_share(1.0, 1, 1, 0.999, spread_alone=True) == pytest.approx(1.499)


def test_a_large_fleet_shares_the_turns() -> None:
    # 1000 workers, 2 turns a second in all: each every 500 s on average.
    assert fleet_share(1.0, 1000, 2, 0.5) == pytest.approx(500.0)
    assert fleet_share(1.0, 1000, 2, 0.5, spread_alone=True) == pytest.approx(500.0)


def test_the_spread_is_half_to_one_and_a_half_times_the_share() -> None:
    assert fleet_share(1.0, 20, 4, 0.0) == pytest.approx(2.5)
    assert fleet_share(1.0, 20, 4, 1.0) == pytest.approx(7.5)
    # One past the small fleet: already spread, around fleet / takers.
    assert fleet_share(1.0, 5, 4, 0.0) == pytest.approx(0.625)
    assert fleet_share(1.0, 5, 4, 1.0) == pytest.approx(1.875)


def test_an_unknown_fleet_counts_as_one() -> None:
    assert fleet_share(1.0, 0, 1, 0.5) == 1.0
    assert fleet_share(1.0, 0, 1, 0.5, spread_alone=True) == pytest.approx(1.0)
