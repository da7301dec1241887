"""Scenario 8, bad input: hypothesis feeds ids, names, payloads and sizes to the calls
users make (start_workflow, signal, query) and to the parsers behind the CLI and the
worker. Every call either works or raises a clear error (our error tree, or ValueError /
TypeError, with a message); after each example the workflow's history is checked.
Derandomized and bounded, so CI runs the same examples every time."""

from __future__ import annotations

import contextlib
import os
import string
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.codec import MsgpackCodec
from engine.dead_letters import parse_id
from engine.errors import RedurableError
from engine.events import decode_packed_event
from engine.keys import Keys
from engine.limits import MAX_PAYLOAD_BYTES
from scripts.chaos.poison_workflows import SignalLog
from sdk import Client
from sdk.cli.common import CliError, parse_inputs
from sdk.cli.inspect import _decode_token
from sdk.converter import value_to_wire
from sdk.testing import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.chaos]

#: CI's count; the runner (`python -m scripts.chaos run fuzz`) asks for more.
EXAMPLES = int(os.environ.get("REDURABLE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FAST = settings(FUZZ, max_examples=EXAMPLES * 8)

#: Characters that are legal, illegal (braces, controls, spaces) or odd (':', unicode).
_ALPHABET = string.ascii_letters + string.digits + "-_.:{}| \t\n\x00\x7féß中😀"
names = st.one_of(
    st.text(alphabet=_ALPHABET, max_size=40),
    st.text(max_size=20),
    st.sampled_from(["x:history", "q:info", "a" * 256, "a" * 257, "a" * 2000, "", " "]),
)
json_like = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4),
    max_leaves=12,
)
#: Now and then a payload right at, or just past, the size limit.
sized = st.sampled_from([MAX_PAYLOAD_BYTES - 6, MAX_PAYLOAD_BYTES - 5, 10]).map(
    lambda n: b"x" * n)
payloads = st.lists(json_like | sized | st.sets(st.integers(), max_size=3), max_size=3)


def assert_clear(exc: BaseException) -> None:
    """A clear error: ours, or ValueError/TypeError, with a message."""
    assert isinstance(exc, RedurableError | ValueError | TypeError), repr(exc)
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


async def assert_history_sound(client: Client, wf_id: str, signals: int) -> None:
    """Events numbered 1..N, the state agrees, the run started once, and exactly the
    signals that were accepted are in it."""
    raw: Any = await client.redis.xrange(client.keys.history(wf_id))
    events = [fields for _, fields in raw]
    assert [int(f[b"id"]) for f in events] == list(range(1, len(events) + 1))
    state: Any = await client.redis.hget(client.keys.workflow(wf_id), "next_event_id")
    assert int(state) == len(events) + 1
    types = [f[b"type"] for f in events]
    assert types[0] == b"WorkflowExecutionStarted"
    assert types.count(b"WorkflowExecutionStarted") == 1
    assert types.count(b"WorkflowExecutionSignaled") == signals


_counter = iter(range(10**9))


@FUZZ
@given(wf_type=names, wf_id=names, queue=names, args=payloads)
async def test_start_workflow_works_or_fails_clearly(
    client: Client, wf_type: str, wf_id: str, queue: str, args: list[Any]
) -> None:
    try:
        handle = await client.start_workflow(wf_type, *args, id=wf_id, task_queue=queue)
    except Exception as exc:
        assert_clear(exc)
        return
    await assert_history_sound(client, wf_id, 0)
    events = [e async for e in handle.fetch_history()]
    assert events[0].attributes["workflow_type"] == wf_type
    # Stored as the converter's plain data (a set is an array).
    plain = value_to_wire(list(args))
    assert events[0].attributes["input"] == MsgpackCodec().decode(client.codec.encode(plain))
    await handle.terminate("fuzz")  # the next example may reuse the id


@FUZZ
@given(batches=st.lists(st.tuples(names, payloads), min_size=1, max_size=4))
async def test_signals_work_or_fail_clearly_and_never_corrupt(
    client: Client, batches: list[tuple[str, list[Any]]]
) -> None:
    wf_id = f"fuzz-{next(_counter)}"
    handle = await client.start_workflow(SignalLog.run, 10**6, id=wf_id, task_queue="q")
    accepted = 0
    for name, args in batches:
        try:
            await handle.signal(name, *args)
            accepted += 1
        except Exception as exc:
            assert_clear(exc)
        await assert_history_sound(client, wf_id, accepted)


async def test_queries_with_any_name_work_or_fail_clearly(client: Client) -> None:
    """Run against a live worker, so valid names get an answer (or UnknownQueryError)."""
    async with running_worker(client, task_queue="q", workflows=[SignalLog]):
        handle = await client.start_workflow(SignalLog.run, 1, id="wf-q", task_queue="q")

        @FUZZ
        @given(name=names, args=st.lists(json_like, max_size=2))
        def probe(name: str, args: list[Any]) -> None:
            async def ask() -> None:
                try:
                    await handle.query(name, *args, timeout=2)
                except Exception as exc:
                    assert_clear(exc)

            anyio.from_thread.run(ask)

        await anyio.to_thread.run_sync(probe)
        await assert_history_sound(client, "wf-q", 0)


# --- parsers (no server) -----------------------------------------------------------------


@FAST
@given(values=st.lists(st.text(max_size=30), max_size=4))
def test_cli_inputs_parse_or_fail_clearly(values: list[str]) -> None:
    try:
        parsed = parse_inputs(values)
    except CliError as exc:
        assert "is not valid JSON" in str(exc)
        return
    assert len(parsed) == len(values)


@FAST
@given(token=st.text(max_size=40) | st.text(alphabet=string.ascii_letters + "-_=", max_size=40))
def test_cli_page_tokens_parse_or_fail_clearly(token: str) -> None:
    try:
        start_ms, workflow_id = _decode_token(token)
    except (CliError, RedurableError, ValueError) as exc:
        assert str(exc).strip()
        return
    assert isinstance(start_ms, int) and isinstance(workflow_id, str)


@FAST
@given(text=st.text(max_size=30)
       | st.from_regex(r"\d{1,3}/\d{1,14}-\d{1,3}", fullmatch=True)
       | st.from_regex(r"queries:[^\s]{0,10}/\d{1,14}-\d{1,3}", fullmatch=True))
def test_dead_letter_ids_parse_or_fail_clearly(text: str) -> None:
    keys = Keys("p", 4)
    try:
        where = parse_id(keys, text)
    except Exception as exc:
        assert_clear(exc)
        return
    assert where.entry_id.count("-") == 1
    if where.shard is None:
        assert where.key == keys.stream_dead_letters(keys.queries(where.task_queue))
    else:
        assert 0 <= where.shard < 4 and where.key == keys.dead_letters(where.shard)


@FAST
@given(data=st.binary(max_size=64))
def test_payload_decode_works_or_fails_clearly(data: bytes) -> None:
    try:
        MsgpackCodec().decode(data)
    except Exception as exc:
        assert_clear(exc)


@FAST
@given(data=st.binary(max_size=64) | st.text(alphabet="0123456789:abc", max_size=40).map(
    str.encode))
def test_task_event_decode_fails_only_as_the_worker_expects(data: bytes) -> None:
    """The worker's speculative path catches ValueError and IndexError from a task's
    packed event and falls back to the normal path; anything else would stop it."""
    with contextlib.suppress(ValueError, IndexError):
        decode_packed_event(data)
