"""The README's "From Python" script runs as printed (against the test server, in a
namespace of its own) and prints what the README says; the quickstart stays two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import sync_redis, unique_prefix
from tests.integration.cli_support import ENV

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_quickstart_is_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "\n    scripts/setup && .venv/bin/redurable demo\n" in text
    assert "\n    scripts/check\n" in text


def test_from_python_runs_as_printed(redis_url: str, tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = code.group(1)
    dev_server = 'Client.connect("redis://127.0.0.1:6390")'
    assert dev_server in script  # the `redurable dev` server the section starts from
    prefix = unique_prefix()
    (tmp_path / "order_demo.py").write_text(
        script.replace(dev_server, f"Client.connect({redis_url!r}, prefix={prefix!r})"),
        encoding="utf-8",
    )
    try:
        done = subprocess.run(
            [sys.executable, "order_demo.py"], cwd=tmp_path, capture_output=True, text=True,
            env=ENV, timeout=60,
        )  # fmt: skip
    finally:
        r = sync_redis(redis_url)
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)
        r.close()
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [line for line in done.stdout.splitlines() if "[info" not in line]
    assert printed == ["charged for product 3", "Status(state='Picked up')"], done.stdout
    for line in printed:  # the README shows the same lines
        assert f"\n    {line}\n" in section


def test_testing_workflows_example_passes(tmp_path: Path) -> None:
    """The README's time-skipping test file passes under pytest as printed."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Testing workflows") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "test_reminder.py").write_text(code.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reminder.py"],
        cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
