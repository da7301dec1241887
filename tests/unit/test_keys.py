"""engine/keys.py is the key schema's one source: the Lua library builds key names only
with the helpers generated from it, and those give exactly the names Keys gives."""

from __future__ import annotations

import itertools
import re
import string
from importlib import resources
from typing import Any

import fakeredis
import pytest

from engine.keys import SHARD_KEYS, Keys, lua_key_helpers

pytestmark = pytest.mark.anyio

#: Sample values of every template parameter, awkward ones included (validate allows
#: ':' and '|' in ids and names).
SAMPLES = {
    "workflow_id": ["order-3", "a:b|c", "ünïcödé-✓"],
    "task_queue": ["orders", "q:1"],
    "status": ["RUNNING", "CONTINUED_AS_NEW"],
    "workflow_type": ["Order", "ns.Type"],
    "sticky": ["host-1-0a1b2c3d"],
    "schedule_id": ["nightly", "a:b|c"],
    "attribute": ["CustomerId"],
    "sa_type": ["KEYWORD", "KEYWORD_LIST"],
    "value": ["c-1", "a:b {x}", "ünï"],
    "run_id": ["0123456789abcdef0123456789abcdef"],
}
#: Keys of a workflow's closed run: named by run id, in the workflow's shard.
CLOSED_RUN_KEYS = ("closed_run", "closed_run_history")


def _params(template: str) -> list[str]:
    return [p for _, p, _, _ in string.Formatter().parse(template) if p]


def _python_key(keys: Keys, name: str, shard: int, values: tuple[str, ...]) -> str:
    method: Any = getattr(keys, name)
    if name in ("workflow", "history", "buffer", "schedule", "updates", "update_inbox"):
        return str(method(*values))
    if name in CLOSED_RUN_KEYS:
        return str(method("order-3", *values))
    return str(method(shard, *values))


@pytest.mark.parametrize("keys", [Keys(), Keys("shop", 16)])
async def test_lua_helpers_name_the_keys_keys_names(keys: Keys) -> None:
    cases: list[tuple[str, str, tuple[str, ...]]] = []  # (helper, shard prefix, values)
    expected: list[str] = []
    for name, template in SHARD_KEYS.items():
        params = _params(template)
        for values in itertools.product(*(SAMPLES[p] for p in params)):
            first = values[0] if values else None
            by_id = params[:1] in (["workflow_id"], ["schedule_id"])
            shard = keys.shard(first) if by_id and first is not None else 3 % keys.shards
            if name in CLOSED_RUN_KEYS:
                shard = keys.shard("order-3")
            cases.append((name, keys.shard_prefix(shard), values))
            expected.append(_python_key(keys, name, shard, values))
    calls: list[str] = []
    argv: list[str] = []
    for name, prefix, values in cases:
        at = len(argv) + 1
        argv += [prefix, *values]
        args = ", ".join(f"ARGV[{at + i}]" for i in range(1 + len(values)))
        calls.append(f"key_{name}({args})")
    calls_text = ", ".join(calls)
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        got: Any = await redis.eval(f"{lua_key_helpers()}\nreturn {{{calls_text}}}", 0, *argv)
    finally:
        await redis.aclose()
    assert [g.decode() for g in got] == expected


def test_every_template_has_its_keys_method() -> None:
    for name in SHARD_KEYS:
        assert callable(getattr(Keys, name)), name


def test_the_schema_as_operators_read_it() -> None:
    """DESIGN.md's key schema: these names must not change."""
    keys = Keys()
    shard = keys.shard("order-3")
    tag = f"redurable:{{{shard}}}"
    assert keys.workflow("order-3") == f"{tag}:wf:order-3"
    assert keys.history("order-3") == f"{tag}:wf:order-3:history"
    assert keys.buffer("order-3") == f"{tag}:wf:order-3:buffer"
    assert keys.closed_run("order-3", "r1") == f"{tag}:run:r1"  # in the workflow's shard
    assert keys.closed_run_history("order-3", "r1") == f"{tag}:run:r1:history"
    assert keys.workflow_tasks(7, "orders") == "redurable:{7}:tq:orders:wf"
    assert keys.activity_tasks(7, "orders") == "redurable:{7}:tq:orders:act"
    assert keys.sticky_tasks(7, "orders", "w-1") == "redurable:{7}:sticky:orders:w-1"
    assert keys.sticky_queries("orders", "w-1") == "redurable:sticky:orders:w-1:queries"
    assert keys.timers(7) == "redurable:{7}:timers"
    assert keys.dead_letters(7) == "redurable:{7}:dlq"
    assert keys.index_start(7) == "redurable:{7}:index:start"
    assert keys.index_status(7, "RUNNING") == "redurable:{7}:index:status:RUNNING"
    assert keys.index_type(7, "Order") == "redurable:{7}:index:type:Order"
    assert keys.index_close(7) == "redurable:{7}:index:close"
    assert keys.sa_types(7) == "redurable:{7}:index:sa"
    assert keys.sa_values(7, "Amount", "INT") == "redurable:{7}:index:sa:Amount:INT"
    assert keys.sa_value(7, "CustomerId", "KEYWORD", "c-1") == (
        "redurable:{7}:index:sa:CustomerId:KEYWORD:c-1")
    assert keys.closed_channel(7) == "redurable:{7}:closed"
    assert keys.workers("orders") == "redurable:workers:orders"
    assert keys.worker_info("orders") == "redurable:workers:orders:info"
    assert keys.config() == "redurable:config"


# What a key name built in Lua by hand looks like: a schema fragment in a string, or a
# key name (or prefix) concatenated or cut.
_HAND_BUILT = re.compile(
    r"'(?:wf:|tq:|index:|:history|:buffer|:wf|:act|dlq|timers)'"
    r"|prefix\s*\.\.|\.\.\s*(?:c\.)?prefix\b|keys\[\d+\]\s*\.\.|string\.sub\(keys\["
)


def test_no_lua_file_builds_a_key_name_itself() -> None:
    folder = resources.files("engine").joinpath("lua")
    found = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".lua"):
            continue
        for number, line in enumerate(entry.read_text().splitlines(), 1):
            code = line.split("--", 1)[0]
            if _HAND_BUILT.search(code):
                found.append(f"{entry.name}:{number}: {line.strip()}")
    assert found == []
