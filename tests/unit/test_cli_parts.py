"""Pieces of the CLI that need no server: module discovery, inputs, list tokens, tables."""

from __future__ import annotations

import io
import sys
import types

import pytest
from rich.console import Console

from sdk import activity, workflow
from sdk.cli.common import CliError, parse_inputs
from sdk.cli.inspect import _decode_token, _encode_token
from sdk.cli.main import discover
from sdk.cli.tables import Column, Fitted, fit, output_width
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


def _render(fitted: Fitted) -> list[str]:
    console = Console(width=fitted.width, file=io.StringIO(), color_system=None)
    console.print(fitted.table)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue().splitlines()


def test_tables_leave_out_the_least_important_columns_first() -> None:
    run_id = "0e4a1d3edd2349589cd78a9b0b6daa82"
    columns = [Column("Id"), Column("Run id"), Column("Queue", drop=2), Column("Type", drop=1),
               Column("Status"), Column("Reason", wrap=True)]  # fmt: skip
    rows = [["order-5", run_id, "orders", "Order", "CANCELED", "no " * 30]]
    wide = fit(columns, rows, 200)
    assert wide.dropped == [] and wide.width == 200
    assert any("Order" in line and "CANCELED" in line for line in _render(wide))
    narrow = fit(columns, rows, 80)
    assert narrow.dropped == ["Queue", "Type"]
    lines = _render(narrow)
    assert max(len(line) for line in lines) <= 80
    assert any(rows[0][0] in line and run_id in line and "CANCELED" in line for line in lines)
    assert narrow.note(80) is not None and "Queue, Type" in narrow.note(80).plain  # type: ignore[union-attr]
    # Kept columns that need more than the output has: wider, never cut.
    cramped = fit(columns, rows, 50)
    assert cramped.width > 50
    assert any(rows[0][0] in line and run_id in line for line in _render(cramped))
    # No limit (a pipe): every column, every row on one line.
    unlimited = fit(columns, rows, None)
    assert unlimited.dropped == [] and len(_render(unlimited)) == 5  # 3 rules, header, row


def test_output_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "123")
    assert output_width() == 123
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert output_width() is None  # piped: no limit
