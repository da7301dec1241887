"""The search-attributes golden history (tests/golden/search_attributes.*.json): it
replays to the attributes workflow.info() showed live, and code that no longer upserts
where the history did fails replay with NondeterminismError (an upsert is a command)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.errors import NondeterminismError
from sdk import workflow
from tests.golden import GOLDEN_DIR, load
from tests.unit.test_golden import replay_golden

GOLDEN = GOLDEN_DIR / "search_attributes.flags-1-2-3.json"


@workflow.defn(name="Tagged")
class TaggedWithoutFirstUpsert:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        await workflow.sleep(timedelta(milliseconds=50))
        workflow.upsert_search_attributes({"Stage": "shipped"})
        return dict(workflow.info().search_attributes)


@workflow.defn(name="Tagged")
class TaggedWithOtherValues:
    """Other values, same upsert calls: matched by kind, as Temporal does."""

    @workflow.run
    async def run(self) -> dict[str, Any]:
        workflow.upsert_search_attributes({"Stage": "boxing"})
        await workflow.sleep(timedelta(milliseconds=50))
        workflow.upsert_search_attributes({"Stage": "sent"})
        return dict(workflow.info().search_attributes)


def test_replays_to_what_info_showed() -> None:
    golden = load(GOLDEN)
    hooks = replay_golden(golden)
    assert hooks.outcome == ("ok", {"Customer": "c-1", "Stage": "shipped", "Tags": ["a", "b"]})
    upserts = [e for e in golden.events if e.type == "UpsertWorkflowSearchAttributes"]
    assert [e.attributes() for e in upserts] == [
        {"search_attributes": {"Stage": ["KEYWORD", "packing"], "Amount": ["INT", "10"]}},
        {"search_attributes": {"Stage": ["KEYWORD", "shipped"], "Amount": None,
                               "Tags": ["KEYWORD_LIST", ["a", "b"]]}},
    ]


def test_a_missing_upsert_is_nondeterministic() -> None:
    with pytest.raises(NondeterminismError, match="UpsertWorkflowSearchAttributes"):
        replay_golden(load(GOLDEN), TaggedWithoutFirstUpsert)


def test_changed_values_replay() -> None:
    hooks = replay_golden(load(GOLDEN), TaggedWithOtherValues)
    assert hooks.outcome == ("ok", {"Customer": "c-1", "Stage": "sent"})
