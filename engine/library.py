"""The Redis Functions library's source, its version, and the names it registers.

Each version of the library is loaded side by side with the others, under its own
library name (`redurable_<version>`), and registers every function under a name that
carries the version (`rd_start_<version>`): Redis function names are global across
libraries, so two versions can only coexist if their names differ. A process calls the
functions of the library it was built with, whatever other versions the server holds,
so old and new workers and clients of a rolling deploy never run each other's code
(docs/design-notes.md "Side-by-side library versions").

The Lua sources keep the plain names (`redis.register_function('rd_start', ...)`);
`library_source` adds the version to each when it builds the library, and every caller
maps a plain name to the versioned one through `function_name` (or `versioned_names`,
the same mapping as a dict for the hot path). Nothing here does I/O.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

from engine.keys import lua_key_helpers

#: Every version's library name starts with this; the rest is the version.
LIBRARY_PREFIX = "redurable_"
#: The one library name of releases before side-by-side versions (loaded with FUNCTION
#: LOAD REPLACE, unversioned function names). Left alone by loading; removed only by
#: an admin's prune (engine/functions.py).
LEGACY_LIBRARY = "redurable"
#: A read-only function (versioned like the others) that returns the library's
#: version: a client calls it to tell whether the server has its version loaded,
#: without FUNCTION LIST (which a namespace ACL user may not run, docs/security.md).
VERSION_FUNCTION = "rd_library_version"
#: Where a function is registered in engine/lua: `redis.register_function('rd_x', ...`
#: or `redis.register_function{function_name = 'rd_x', ...`.
_REGISTRATION = re.compile(
    r"""(redis\.register_function\s*(?:\(\s*|\{\s*function_name\s*=\s*))(['"])(rd_\w+)\2"""
)


@functools.cache
def lua_files() -> str:
    """The key helpers generated from engine/keys.py, then engine/lua/*.lua in name
    order: what the version is a hash of."""
    folder = resources.files("engine").joinpath("lua")
    parts = ["-- ===== engine/keys.py =====\n", lua_key_helpers()]
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".lua"):
            parts.append(f"-- ===== {entry.name} =====\n")
            parts.append(entry.read_text())
    return "\n".join(parts)


def version_of_source(lua: str) -> str:
    return hashlib.sha256(lua.encode()).hexdigest()[:16]


@functools.cache
def library_version() -> str:
    return version_of_source(lua_files())


def library_name(version: str | None = None) -> str:
    """The library name of `version` (this one's by default)."""
    return LIBRARY_PREFIX + (version or library_version())


def version_of_library(name: str) -> str | None:
    """The version in a library name; None for a library that is not redurable's
    (the legacy unversioned library answers LEGACY_LIBRARY)."""
    if name == LEGACY_LIBRARY:
        return LEGACY_LIBRARY
    if name.startswith(LIBRARY_PREFIX) and len(name) > len(LIBRARY_PREFIX):
        return name[len(LIBRARY_PREFIX):]
    return None


def versioned(name: str, version: str) -> str:
    return f"{name}_{version}"


@functools.cache
def function_names() -> frozenset[str]:
    """The plain names of the functions engine/lua registers (the version function
    included)."""
    return frozenset({m.group(3) for m in _REGISTRATION.finditer(lua_files())}
                     | {VERSION_FUNCTION})


@functools.cache
def versioned_names() -> dict[str, str]:
    """Plain name -> this version's name, for every function of the library. The hot
    path looks a call's name up here (one dict lookup per FCALL)."""
    version = library_version()
    return {name: versioned(name, version) for name in function_names()}


def function_name(name: str) -> str:
    """The name this version registers `name` under; KeyError for a name the library
    does not register (a typo would otherwise reach the server as "not found")."""
    return versioned_names()[name]


@functools.cache
def library_source() -> str:
    """The library as FUNCTION LOAD takes it: one chunk, key and common helpers first,
    every registration renamed to this version's name, and the version function last."""
    return build_library(lua_files())


def build_library(lua: str) -> str:
    """The library of a Lua source (lua_files(), or another version's in tests)."""
    version = version_of_source(lua)
    renamed, count = _REGISTRATION.subn(
        lambda m: f"{m.group(1)}'{versioned(m.group(3), version)}'", lua)
    registrations = lua.count("redis.register_function")
    if count != registrations:  # a registration in a form the pattern does not know
        raise RuntimeError(
            f"engine/lua registers {registrations} functions but only {count} were "
            "renamed to their versioned names: use redis.register_function('rd_name', "
            "...) or redis.register_function{function_name = 'rd_name', ...}")
    version_function = versioned(VERSION_FUNCTION, version)
    return "\n".join(
        [
            f"#!lua name={library_name(version)}\n",
            renamed,
            f"redis.register_function{{function_name='{version_function}', "
            f"callback=function() return '{version}' end, flags={{'no-writes'}}}}\n",
        ]
    )
