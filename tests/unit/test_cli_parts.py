"""Pieces of the CLI that need no server: module discovery, inputs, list tokens."""

from __future__ import annotations

import types

import pytest

from sdk import activity, workflow
from sdk.cli.common import CliError, parse_inputs
from sdk.cli.inspect import _decode_token, _encode_token
from sdk.cli.main import discover
from sdk.examples import order


def test_discover_prefers_the_module_lists() -> None:
    workflows, activities = discover(order)
    assert workflows == [order.Order]
    assert activities == order.ACTIVITIES


def test_discover_finds_decorated_members_without_lists() -> None:
    @activity.defn
    async def ping() -> str:
        return "pong"

    @workflow.defn
    class Pinger:
        @workflow.run
        async def run(self) -> str:
            return "x"

    module = types.ModuleType("pinger")
    module.ping = ping  # type: ignore[attr-defined]
    module.Pinger = Pinger  # type: ignore[attr-defined]
    module.helper = len  # type: ignore[attr-defined]
    assert discover(module) == ([Pinger], [ping])


def test_inputs_are_json_values() -> None:
    assert parse_inputs(["3", "8.0", '"text"', '{"a": [1, null]}', "true"]) == [
        3, 8.0, "text", {"a": [1, None]}, True,
    ]  # fmt: skip
    assert parse_inputs(None) == []
    with pytest.raises(CliError, match="not valid JSON"):
        parse_inputs(["text"])


def test_list_tokens_round_trip() -> None:
    for workflow_id in ("order-3", "with:colons and spaces", "ünïcode"):
        token = _encode_token(1795588271691, workflow_id)
        assert token.isascii() and " " not in token
        assert _decode_token(token) == (1795588271691, workflow_id)
    with pytest.raises(CliError):
        _decode_token("bm90LWEtdG9rZW4")  # "not-a-token": no separator
