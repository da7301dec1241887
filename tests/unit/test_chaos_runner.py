"""The chaos runner's table writer: it replaces its own scenario's row, adds a missing
one at the end of the table, and leaves other rows and the prose alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos.__main__ import _command_for, parse_args, write_row

DOC = """# Reliability

| scenario | figures | command |
|---|---|---|
| kill-storm | old figures | `old` |
| poison | someone else's | `theirs` |

## After the table
| not | this table |
"""


def test_write_row_replaces_and_appends(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text(DOC)
    write_row(doc, "kill-storm", "new | figures", "python -m scripts.chaos run kill-storm")
    write_row(doc, "redis-crash", "crash figures", "python -m scripts.chaos run redis-crash")
    lines = doc.read_text().splitlines()
    assert lines[4] == ("| kill-storm | new / figures | "
                        "`python -m scripts.chaos run kill-storm` |")
    assert lines[5] == "| poison | someone else's | `theirs` |"
    assert lines[6].startswith("| redis-crash | crash figures |")
    assert lines[8:] == ["## After the table", "| not | this table |"]


def test_command_for_keeps_the_size_options() -> None:
    argv = ["run", "--all", "--workflows", "50", "--redis-url=redis://127.0.0.1:6379"]
    assert _command_for("kill-storm", argv) == [
        "kill-storm", "--workflows", "50", "--redis-url=redis://127.0.0.1:6379"]


def test_bad_arguments_are_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["run", "nope"], ["run"], ["run", "kill-storm", "--workflows", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2
        assert "error:" in capsys.readouterr().err
