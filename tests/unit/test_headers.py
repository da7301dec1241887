"""Headers of calls (sdk/_interception.py) and their place in history events: JSON
text, written only when there are some, so events without headers are unchanged."""

from __future__ import annotations

import pytest

from engine import events as ev
from engine.start_options import StartOptions
from sdk import InvalidArgumentError
from sdk._interception import header_text, parse_header


def test_header_text_is_sorted_json_and_empty_for_none() -> None:
    assert header_text({}) == ""
    assert header_text({"b": "2", "a": {"traceparent": "x"}}) == (
        '{"a":{"traceparent":"x"},"b":"2"}')


def test_header_values_must_be_json() -> None:
    with pytest.raises(InvalidArgumentError, match="JSON"):
        header_text({"x": object()})


def test_parse_header_tolerates_what_the_engine_did_not_write() -> None:
    assert parse_header(None) == {}
    assert parse_header(b"") == {}
    assert parse_header(b'{"k":"v"}') == {"k": "v"}
    assert parse_header(b"not json") == {}
    assert parse_header(b"[1]") == {}


def test_events_carry_a_header_only_when_there_is_one() -> None:
    plain = ev.WorkflowExecutionSignaled(3, 0, "go", b"")
    assert "header" not in ev.encode_event(plain)
    tagged = ev.WorkflowExecutionSignaled(3, 0, "go", b"", header={"k": "v"})
    fields = ev.encode_event(tagged)
    assert fields["header"] == '{"k":"v"}'
    decoded = ev.decode_event({k.encode(): v if isinstance(v, bytes) else v.encode()
                               for k, v in fields.items()})
    assert decoded == tagged
    started = ev.WorkflowExecutionStarted(1, 0, "W", "q", b"", "r")
    assert "header" not in started.attributes()


def test_start_options_send_the_header_only_when_set() -> None:
    assert "header" not in StartOptions().to_json()
    assert '"header":"{\\"k\\":\\"v\\"}"' in StartOptions(header='{"k":"v"}').to_json()
