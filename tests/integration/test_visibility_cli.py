"""`redurable workflow start --search-attribute`, `workflow list --query`, `workflow count`,
`workflow search-attributes` and `workflow describe` showing search attributes:
subprocesses on a real server."""

from __future__ import annotations

from tests.integration.test_cli import Cli, assert_one_line_error, cli

__all__ = ["cli"]  # the fixture, used by name


def test_search_attributes_list_and_count(cli: Cli) -> None:
    for i in range(3):
        cli.json("workflow", "start", "Order", "--id", f"o-{i}", "-q", "orders",
                 "--search-attribute", f'CustomerId="c-{i}"',
                 "--search-attribute", f"Amount={i * 10}")
    listed = cli.json("workflow", "list", "--query", "Amount >= 10 ORDER BY StartTime ASC")
    assert [w["workflow_id"] for w in listed["workflows"]] == ["o-1", "o-2"]
    assert listed["workflows"][0]["search_attributes"] == {"CustomerId": "c-1", "Amount": 10}
    assert listed["more"] is False
    first = cli.json("workflow", "list", "--query", "", "--limit", "1")
    assert [w["workflow_id"] for w in first["workflows"]] == ["o-2"] and first["more"] is True
    assert cli.json("workflow", "count", "--query", "CustomerId IN ('c-0', 'c-2')") == {
        "count": 2}
    assert cli.json("workflow", "count") == {"count": 3}
    table = cli("workflow", "list", "-q", "CustomerId = 'c-1'")
    assert table.returncode == 0 and 'CustomerId="c-1"' in table.stdout
    assert "o-0" not in table.stdout
    described = cli("workflow", "describe", "o-1")
    assert '{"Amount": 10, "CustomerId": "c-1"}' in described.stdout
    assert cli("workflow", "count", "-q", "Amount > 5").stdout.strip() == "2"
    assert_one_line_error(cli("workflow", "list", "--query", "Amount > "),
                          "invalid query at position 9")
    assert_one_line_error(cli("workflow", "count", "--query", "Amount = 'x'"),
                          "'Amount' is INT")
    assert_one_line_error(cli("workflow", "list", "--query", "Amount > 1", "--status",
                              "RUNNING"), "not both")
    assert_one_line_error(
        cli("workflow", "start", "Order", "-q", "orders", "--search-attribute", "bad name=1"),
        "search attribute name")
    assert cli.json("workflow", "search-attributes") == {
        "search_attributes": {"Amount": ["INT"], "CustomerId": ["KEYWORD"]}}
    names = cli("workflow", "search-attributes").stdout
    assert "CustomerId" in names and "KEYWORD" in names
