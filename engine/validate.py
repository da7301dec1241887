"""Validation of untrusted ids and names before they reach a key or a stream."""

from __future__ import annotations

import re

from engine.errors import InvalidArgumentError
from engine.keys import WORKER_INFO_SUFFIX, WORKFLOW_KEY_SUFFIXES

MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 128
# Printable ASCII/Unicode without braces (they would break the shard hash tag),
# without whitespace control characters, and without ':' at the start.
_FORBIDDEN = re.compile(r"[{}\x00-\x1f\x7f]")


def check_id(value: object, what: str = "workflow id") -> str:
    """A workflow id: 1..256 characters, no braces, no control characters, and not
    ending with the suffix of a workflow's key (":history", ":buffer")."""
    workflow_id = _check(value, what, MAX_ID_LENGTH)
    for suffix in WORKFLOW_KEY_SUFFIXES:
        if workflow_id.endswith(suffix):
            raise InvalidArgumentError(
                f"{what} {workflow_id!r} ends with {suffix!r}, which is reserved: it names "
                f"a key of workflow {workflow_id[: -len(suffix)]!r}"
            )
    return workflow_id


def check_task_queue(value: object) -> str:
    """A task queue name: a name that does not end with ":info" (the workers zset of
    queue "q:info" would be the worker-info hash of queue "q", and the worker beating
    into it would stop on a WRONGTYPE error)."""
    name = check_name(value, "task queue")
    if name.endswith(WORKER_INFO_SUFFIX):
        raise InvalidArgumentError(
            f"task queue {name!r} ends with {WORKER_INFO_SUFFIX!r}, which is reserved: it "
            f"names a key of task queue {name[: -len(WORKER_INFO_SUFFIX)]!r}"
        )
    return name


def check_name(value: object, what: str) -> str:
    """A workflow type, activity type, signal, query or task queue name."""
    name = _check(value, what, MAX_NAME_LENGTH)
    if any(c.isspace() for c in name):
        raise InvalidArgumentError(f"{what} {name!r} must not contain whitespace")
    return name


def check_patch_id(value: object) -> str:
    """A patch id of workflow.patched: 1..128 characters, no control characters (it is
    written to history as plain text; spaces are fine, as in Temporal)."""
    return _check(value, "patch id", MAX_NAME_LENGTH)


def _check(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgumentError(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidArgumentError(f"{what} is {len(value)} characters, over the limit of {limit}")
    bad = _FORBIDDEN.search(value)
    if bad:
        raise InvalidArgumentError(
            f"{what} {value!r} contains the forbidden character {bad.group()!r} "
            "(braces and control characters are not allowed)"
        )
    return value
