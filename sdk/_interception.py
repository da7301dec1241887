"""Wiring of the client's interceptors (sdk/interceptor.py) and the headers of calls.

The public calls (`Client.start_workflow`, a handle's `signal`, `query`, `cancel`,
`terminate`; `workflow.start_activity` in workflow code) hand their arguments to the
interceptor chain when there is one; the chain's root calls the same public call
again, with the headers the chain settled on in a context variable. That second call
sees it is the root's (the variable is set), runs as it always did, and reads the
headers from the variable. So the calls keep one body each, and an option another
part of the code adds to them passes through the chain unchanged (`other_options`).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidArgumentError
from sdk._definitions import query_name, signal_name, update_name, workflow_type_name
from sdk.interceptor import (
    CancelWorkflowInput,
    ClientInterceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    TerminateWorkflowInput,
    WorkflowOutboundInterceptor,
)

if TYPE_CHECKING:
    from sdk.client.client import Client
    from sdk.client.handle import WorkflowHandle
    from sdk.client.update_handle import WorkflowUpdateHandle

#: Set (to the headers as JSON text, "" none) while the client chain's root runs a call.
_client_root: ContextVar[str | None] = ContextVar("redurable_client_root", default=None)
#: Set (to the headers) while the workflow outbound chain's root makes a call (an
#: activity, a local activity, a child's start, a signal to another workflow).
_activity_root: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "redurable_activity_root", default=None)


def header_text(headers: Mapping[str, Any]) -> str:
    """Headers as the history records them: JSON text ("" for none)."""
    if not headers:
        return ""
    try:
        return json.dumps(dict(headers), separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"headers must be JSON values (say strings): {exc}") from None


def parse_header(raw: bytes | str | None) -> dict[str, Any]:
    """Headers from a task entry's `header` field; {} when absent (or not a JSON map:
    written by something else than the engine, it must not fail every attempt)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- client ---------------------------------------------------------------------------


def client_chain(client: Client, interceptors: Sequence[ClientInterceptor]
                 ) -> OutboundInterceptor | None:
    """The first interceptor is the outermost (it sees a call first), as in temporalio."""
    if not interceptors:
        return None
    chain: OutboundInterceptor = _ClientRoot(client)
    for interceptor in reversed(interceptors):
        chain = interceptor.intercept_client(chain)
    return chain


def intercepting(chain: OutboundInterceptor | None) -> OutboundInterceptor | None:
    """The chain to hand a client call to, or None: no interceptors, or the call is
    the chain's root calling back."""
    return chain if chain is not None and _client_root.get() is None else None


def outgoing_header() -> str:
    """The headers (JSON text) the chain's root sends with the current call."""
    return _client_root.get() or ""


_START_NAMED = ("execution_timeout", "run_timeout", "task_timeout", "id_reuse_policy",
                "id_conflict_policy", "memo", "start_signal_args")


async def start_workflow(chain: OutboundInterceptor, call: dict[str, Any]) -> WorkflowHandle:
    """`Client.start_workflow`'s arguments (its `locals()`) through the chain."""
    parameters = _parameters(type(call["self"]).start_workflow)
    options = {k: v for k, v in call.items() if k in parameters and k != "self"}
    workflow = options.pop("workflow")
    positional, args = options.pop("positional"), options.pop("args")
    start_signal = options.pop("start_signal")
    named = {k: options.pop(k) for k in _START_NAMED if k in options}
    return await chain.start_workflow(StartWorkflowInput(
        workflow=workflow_type_name(workflow),
        args=list(args if args is not None else positional),
        id=options.pop("id"),
        task_queue=options.pop("task_queue"),
        ret_type=options.pop("result_type"),
        start_signal=None if start_signal is None else signal_name(start_signal),
        other_options=options,
        workflow_ref=workflow,
        start_signal_ref=start_signal,
        **named,
    ))


@functools.cache
def _parameters(function: Any) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


class _ClientRoot(OutboundInterceptor):
    """The end of the chain: the client's own calls, with the chain's headers."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle:
        ref = input.workflow_ref
        workflow = ref if ref is not None and workflow_type_name(ref) == input.workflow \
            else input.workflow
        signal = input.start_signal_ref
        if signal is None or signal_name(signal) != input.start_signal:
            signal = input.start_signal
        named = {k: getattr(input, k) for k in _START_NAMED}
        token = _client_root.set(header_text(input.headers))
        try:
            return await self.client.start_workflow(
                workflow, *input.args, id=input.id, task_queue=input.task_queue,
                result_type=input.ret_type, start_signal=signal,
                **named, **input.other_options)
        finally:
            _client_root.reset(token)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        ref = input.signal_ref
        signal = ref if ref is not None and signal_name(ref) == input.signal else input.signal
        token = _client_root.set(header_text(input.headers))
        try:
            handle = self.client.get_workflow_handle(input.id, run_id=input.run_id)
            await handle.signal(signal, *input.args)
        finally:
            _client_root.reset(token)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        ref = input.query_ref
        query = ref if ref is not None and query_name(ref) == input.query else input.query
        token = _client_root.set("")
        try:
            handle = self.client.get_workflow_handle(input.id, run_id=input.run_id)
            return await handle.query(query, *input.args, timeout=input.timeout,
                                      result_type=input.ret_type)
        finally:
            _client_root.reset(token)

    async def cancel_workflow(self, input: CancelWorkflowInput) -> None:
        token = _client_root.set("")
        try:
            handle = self.client.get_workflow_handle(input.id, run_id=input.run_id)
            await handle.cancel(input.reason)
        finally:
            _client_root.reset(token)

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        token = _client_root.set("")
        try:
            handle = self.client.get_workflow_handle(input.id, run_id=input.run_id)
            await handle.terminate(input.reason)
        finally:
            _client_root.reset(token)

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        ref = input.update_ref
        update = ref if ref is not None and update_name(ref) == input.update else input.update
        token = _client_root.set("")  # an update's headers are not sent yet
        try:
            handle = self.client.get_workflow_handle(input.id, run_id=input.run_id)
            return await handle.start_update(
                update, args=list(input.args), wait_for_stage=input.wait_for_stage,
                id=input.update_id, result_type=input.ret_type)
        finally:
            _client_root.reset(token)


# --- workflow code ----------------------------------------------------------------------


def workflow_outbound(hooks: Any) -> WorkflowOutboundInterceptor | None:
    """The workflow's outbound chain to hand a call to, or None: no interceptors, or
    the call is the chain's root calling back."""
    outbound: WorkflowOutboundInterceptor | None = getattr(hooks, "outbound", None)
    return outbound if outbound is not None and _activity_root.get() is None else None


def activity_headers() -> Mapping[str, Any]:
    """The headers the outbound chain's root makes the current call with (an activity,
    a child's start, a signal)."""
    return _activity_root.get() or {}


def set_activity_root(headers: Mapping[str, Any]) -> Any:
    header_text(headers)  # JSON values only: a clear error in the workflow code
    return _activity_root.set(dict(headers))


def reset_activity_root(token: Any) -> None:
    _activity_root.reset(token)
