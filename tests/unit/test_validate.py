"""Validation of untrusted ids and names."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgumentError
from engine.keys import WORKER_INFO_SUFFIX, WORKFLOW_KEY_SUFFIXES, Keys
from engine.validate import MAX_ID_LENGTH, MAX_NAME_LENGTH, check_id, check_name, check_task_queue


@pytest.mark.parametrize(
    "value",
    ["order-3", "a", "x" * MAX_ID_LENGTH, "order:3", "a|b", "ünï ✓", "with space", "history"],
)
def test_good_ids(value: str) -> None:
    assert check_id(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_ID_LENGTH + 1), "over the limit of 256"),
        ("a{b", "forbidden character '{'"),
        ("a}b", "forbidden character '}'"),
        ("a\nb", "forbidden character"),
        ("a\x00b", "forbidden character"),
        ("a\x7fb", "forbidden character"),
        ("a\tb", "forbidden character"),
        (3, "must be a string, not int"),
        (None, "must be a string, not NoneType"),
        (b"bytes", "must be a string, not bytes"),
        ("order-3:history", "reserved"),
        ("order-3:buffer", "reserved"),
    ],
)
def test_bad_ids(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_id(value)


def test_reserved_suffixes_are_the_key_suffixes() -> None:
    keys = Keys("p", 4)
    base = keys.workflow("x")
    suffixes = {keys.history("x")[len(base) :], keys.buffer("x")[len(base) :],
                keys.updates("x")[len(base) :], keys.update_inbox("x")[len(base) :]}
    assert suffixes == set(WORKFLOW_KEY_SUFFIXES)


@pytest.mark.parametrize("value", ["Order", "charge_customer", "q" * MAX_NAME_LENGTH, "a.b:c"])
def test_good_names(value: str) -> None:
    assert check_name(value, "workflow type") == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "signal name must not be empty"),
        ("q" * (MAX_NAME_LENGTH + 1), "over the limit of 128"),
        ("has space", "must not contain whitespace"),
        ("nbsp\u00a0", "must not contain whitespace"),
        ("{tag}", "forbidden character"),
        ("bell\x07", "forbidden character"),
    ],
)
def test_bad_names(value: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_name(value, "signal name")


def test_invalid_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_id("")


def test_task_queue_names() -> None:
    assert check_task_queue("orders") == "orders"
    assert check_task_queue("orders:eu") == "orders:eu"
    with pytest.raises(InvalidArgumentError, match="reserved"):
        check_task_queue("orders:info")
    with pytest.raises(InvalidArgumentError, match="task queue must not be empty"):
        check_task_queue("")
    keys = Keys("p", 4)
    assert keys.workers("orders" + WORKER_INFO_SUFFIX) == keys.worker_info("orders")
