"""Side-by-side library versions (engine/library.py, engine/functions.py) on fakeredis:
versioned names, loading that never replaces another version, and the admin's prune."""

from __future__ import annotations

import re

import fakeredis
import pytest
from redis.asyncio import Redis

from engine.calls import Call, FunctionCaller
from engine.functions import is_loaded, load_library, loaded_versions, prune_libraries
from engine.library import (
    LEGACY_LIBRARY,
    VERSION_FUNCTION,
    build_library,
    function_name,
    function_names,
    library_name,
    library_source,
    library_version,
    lua_files,
    version_of_source,
    versioned,
)

pytestmark = pytest.mark.anyio

#: Another version: the same Lua with a changed comment (so another hash).
OTHER_LUA = lua_files() + "\n-- another version\n"
OTHER = version_of_source(OTHER_LUA)


def legacy_library() -> str:
    """The library as releases before side-by-side versions loaded it: one name,
    unversioned function names."""
    return "\n".join([f"#!lua name={LEGACY_LIBRARY}\n", lua_files(),
                      f"redis.register_function{{function_name='{VERSION_FUNCTION}', "
                      "callback=function() return 'legacy' end, flags={'no-writes'}}\n"])


def fake() -> Redis:
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


async def libraries(redis: Redis) -> set[str]:
    return {v if v == LEGACY_LIBRARY else library_name(v) for v in await loaded_versions(redis)}


def test_every_registration_carries_the_version() -> None:
    source = library_source()
    registered = re.findall(r"register_function[({]\s*(?:function_name\s*=\s*)?'(\w+)'", source)
    assert len(registered) == source.count("redis.register_function") == len(function_names())
    assert all(name.endswith("_" + library_version()) for name in registered)
    assert {"rd_start", "rd_wft_complete", "rd_sched_due", VERSION_FUNCTION} <= function_names()
    assert function_name("rd_start") == f"rd_start_{library_version()}"
    with pytest.raises(KeyError):
        function_name("rd_no_such_function")


def test_a_registration_the_renaming_misses_is_refused() -> None:
    aliased = "\nlocal register = redis.register_function\nregister('rd_odd', function() end)\n"
    with pytest.raises(RuntimeError, match="renamed"):
        build_library(lua_files() + aliased)
    # Double quotes are renamed like single ones.
    quoted = build_library(lua_files() + '\nredis.register_function("rd_odd", function() end)\n')
    assert "'rd_odd_" in quoted and '"rd_odd"' not in quoted


async def test_two_versions_and_the_legacy_library_load_side_by_side() -> None:
    redis = fake()
    await redis.function_load(legacy_library())
    await redis.function_load(build_library(OTHER_LUA))
    await load_library(redis)
    await load_library(redis)
    assert await libraries(redis) == {LEGACY_LIBRARY, library_name(), library_name(OTHER)}
    # Each version answers under its own names: nobody runs another version's code.
    assert await redis.fcall_ro(function_name(VERSION_FUNCTION), 0) == library_version().encode()
    assert await redis.fcall_ro(versioned(VERSION_FUNCTION, OTHER), 0) == OTHER.encode()
    assert await redis.fcall_ro(VERSION_FUNCTION, 0) == b"legacy"
    await redis.aclose()


async def test_calls_go_to_this_versions_functions() -> None:
    redis = fake()
    await redis.function_load(build_library(OTHER_LUA))
    caller = FunctionCaller(redis)
    # Only the other version there: this version's is added, not the other's called.
    assert await caller.call(Call(VERSION_FUNCTION, [], [])) == library_version().encode()
    replies = await caller.call_many([Call(VERSION_FUNCTION, [], [])] * 2)
    assert replies == [library_version().encode()] * 2
    assert await loaded_versions(redis) == {library_version(), OTHER}
    await redis.aclose()


async def test_prune_keeps_this_version_the_kept_and_those_in_use() -> None:
    server = fakeredis.FakeServer()
    admin = fakeredis.FakeAsyncRedis(server=server)
    in_use_lua, kept_lua, old_lua = (lua_files() + f"\n-- {n}\n" for n in ("a", "b", "c"))
    for lua in (in_use_lua, kept_lua, old_lua):
        await admin.function_load(build_library(lua))
    await admin.function_load(legacy_library())
    await load_library(admin)
    # A live process of the in-use version: a connection named after its library.
    process = fakeredis.FakeAsyncRedis(server=server,
                                       client_name=library_name(version_of_source(in_use_lua)))
    await process.ping()
    kept = version_of_source(kept_lua)
    report = await prune_libraries(admin, keep=[kept], dry_run=True)
    assert set(report.removed) == {version_of_source(old_lua)}  # legacy: only when asked
    report = await prune_libraries(admin, keep=[kept], legacy=True, dry_run=True)
    assert set(report.removed) == {version_of_source(old_lua), LEGACY_LIBRARY}
    assert report.in_use == [version_of_source(in_use_lua)]
    assert len(await libraries(admin)) == 5  # a dry run deletes nothing
    await prune_libraries(admin, keep=[kept], legacy=True)
    assert await libraries(admin) == {
        library_name(), library_name(kept), library_name(version_of_source(in_use_lua))}
    assert await is_loaded(admin)
    # The process has gone (its connection is renamed here: fakeredis keeps a closed
    # client listed): its version goes with the next prune.
    await process.client_setname("")
    await prune_libraries(admin)
    assert await libraries(admin) == {library_name()}
    await process.aclose()
    await admin.aclose()


async def test_a_server_that_lost_this_version_gets_it_back_on_the_next_call() -> None:
    """A single server whose functions were flushed, or from which a prune removed this
    version while this process was not seen: the call loads it and runs (it did not run
    the first time)."""
    redis = fake()
    await load_library(redis)
    caller = FunctionCaller(redis)
    await redis.function_delete(library_name())
    assert await caller.call(Call(VERSION_FUNCTION, [], [])) == library_version().encode()
    await redis.function_delete(library_name())
    replies = await caller.call_many([Call(VERSION_FUNCTION, [], [])] * 3)
    assert replies == [library_version().encode()] * 3
    assert await loaded_versions(redis) == {library_version()}
    await redis.aclose()


def test_every_function_first_checks_that_its_slot_is_not_moving() -> None:
    """While a shard's slot moves key by key, a Function call that reads or writes
    anything first could see or create keys on the wrong node (engine/lua/00_common.lua
    `slot_moving`): every registered callback calls it before anything else."""
    lines = lua_files().splitlines()
    heads = [n for n, line in enumerate(lines)
             if line.endswith("function(keys, args)")
             and ("redis.register_function('rd_" in line or "callback = " in line)]
    assert len(heads) == "\n".join(lines).count("redis.register_function")
    for n in heads:
        assert lines[n + 1].strip() == (
            "local moving = slot_moving(keys); if moving then return moving end"
        ), lines[n]
