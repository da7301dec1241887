"""Child workflows and external workflow handles, inside workflow code (temporalio's
names and shapes): `workflow.start_child_workflow` / `execute_child_workflow`,
`ChildWorkflowHandle`, `workflow.get_external_workflow_handle`.

The machine side is engine/children.py; the engine carries each start, signal or
cancel to the other workflow's shard and the outcome back (docs/design-notes.md
"Cross-shard hand-off")."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from engine.children import ParentClosePolicy, PendingChild
from engine.errors import InvalidArgumentError
from engine.machine import current_machine
from engine.start_options import WorkflowIDReusePolicy, duration_ms
from engine.validate import check_id, check_task_queue
from sdk import _interception as interception
from sdk._definitions import signal_name, workflow_definition, workflow_type_name
from sdk._memo import memo_to_wire
from sdk._payload_hints import hints_of, untyped, with_result
from sdk._retry import RetryPolicy
from sdk.interceptor import (
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    StartChildWorkflowInput,
)


class ChildWorkflowHandle:
    """A started child workflow: `await handle` gives its result (or raises
    `ChildWorkflowError(cause=...)`), `handle.cancel()` asks it to cancel (the await
    then raises when it has), `await handle.signal(...)` signals it."""

    def __init__(self, child: PendingChild) -> None:
        self._child = child

    @property
    def id(self) -> str:
        return self._child.workflow_id

    @property
    def first_execution_run_id(self) -> str:
        return self._child.run_id

    @property
    def run_id(self) -> str:
        return self._child.run_id

    def __await__(self) -> Generator[Any, None, Any]:
        return self._child.result.__await__()

    def done(self) -> bool:
        return self._child.result.done()

    def result(self) -> Any:
        """The result of a child that has ended (as `asyncio.Future.result`)."""
        return self._child.result.result()

    def cancel(self) -> bool:
        """Ask the child to cancel; its await raises `ChildWorkflowError(cause=
        CancelledError)` once it has (or its result, if it completed anyway)."""
        return self._child.result.cancel()

    async def signal(self, signal: Callable[..., Any] | str, *args: Any) -> None:
        """Signal the child (only this child: not another run with its id)."""
        if outbound := interception.workflow_outbound(current_machine().hooks):
            await outbound.signal_child_workflow(SignalChildWorkflowInput(
                signal=signal_name(signal), args=list(args), child_workflow_id=self.id,
                signal_ref=signal))
            return
        await _signal(self.id, self.run_id, signal, args, child_only=True)


class ExternalWorkflowHandle:
    """Another workflow, by id (and run id), that this workflow may signal or cancel
    (`workflow.get_external_workflow_handle`)."""

    def __init__(self, workflow_id: str, run_id: str | None) -> None:
        self.id = workflow_id
        self.run_id = run_id

    async def signal(self, signal: Callable[..., Any] | str, *args: Any) -> None:
        """Deliver a signal; raises `ApplicationError` (type
        "EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND" or "..._NOT_RUNNING") when there is no
        such running workflow."""
        if outbound := interception.workflow_outbound(current_machine().hooks):
            await outbound.signal_external_workflow(SignalExternalWorkflowInput(
                signal=signal_name(signal), args=list(args), workflow_id=self.id,
                workflow_run_id=self.run_id, signal_ref=signal))
            return
        await _signal(self.id, self.run_id or "", signal, args, child_only=False)

    async def cancel(self) -> None:
        """Ask the workflow to cancel (its code may clean up); raises as `signal`."""
        await current_machine().cancel_external(self.id, self.run_id or "")


async def _signal(
    workflow_id: str, run_id: str, signal: Callable[..., Any] | str, args: Sequence[Any],
    *, child_only: bool, headers: Mapping[str, Any] | None = None,
) -> None:
    machine = current_machine()
    name = signal_name(signal)
    hints = untyped(name) if isinstance(signal, str) else hints_of(signal, method=True)
    payload = machine.codec.encode(hints.encode_args(list(args)))
    if headers:  # an interceptor's: they go with the signal (WorkflowExecutionSignaled)
        interception.header_text(headers)  # JSON values only: a clear error here
    await machine.signal_external(workflow_id, run_id, name, payload, child_only,
                                  dict(headers or {}))


async def signal_external(input: SignalExternalWorkflowInput, signal: Any) -> None:
    """Signal the workflow `input` names, with its headers (the interceptors' root)."""
    await _signal(input.workflow_id, input.workflow_run_id or "", signal, input.args,
                  child_only=False, headers=input.headers)


async def signal_child(input: SignalChildWorkflowInput, signal: Any) -> None:
    """Signal this workflow's latest child with that id (the interceptors' root)."""
    workflow_id = input.child_workflow_id
    children = [c for c in current_machine()._child_state.children.values()
                if c.workflow_id == workflow_id]
    if not children:
        raise InvalidArgumentError(f"this workflow has no child workflow {workflow_id!r}")
    await _signal(workflow_id, children[-1].run_id, signal, input.args, child_only=True,
                  headers=input.headers)


def get_external_workflow_handle(
    workflow_id: str, *, run_id: str | None = None
) -> ExternalWorkflowHandle:
    """A handle to another workflow, for `signal` and `cancel` from workflow code."""
    current_machine()  # only inside workflow code
    return ExternalWorkflowHandle(
        check_id(workflow_id), None if run_id is None else check_id(run_id, "run id")
    )


def _options(
    id_reuse_policy: WorkflowIDReusePolicy,
    execution_timeout: timedelta | float | None,
    run_timeout: timedelta | float | None,
    task_timeout: timedelta | float | None,
) -> dict[str, Any]:
    if not isinstance(id_reuse_policy, WorkflowIDReusePolicy):
        raise InvalidArgumentError(
            f"id_reuse_policy must be a WorkflowIDReusePolicy, not {id_reuse_policy!r}"
        )
    if id_reuse_policy is WorkflowIDReusePolicy.TERMINATE_IF_RUNNING:
        raise InvalidArgumentError("a child workflow cannot use TERMINATE_IF_RUNNING")
    options: dict[str, Any] = {}
    if id_reuse_policy is not WorkflowIDReusePolicy.ALLOW_DUPLICATE:
        options["reuse"] = id_reuse_policy.value
    for key, value, what in (
        ("exec_ms", execution_timeout, "execution_timeout"),
        ("run_ms", run_timeout, "run_timeout"),
        ("task_ms", task_timeout, "task_timeout"),
    ):
        ms = duration_ms(value, what)
        if ms:
            options[key] = ms
    return options


async def start_child_workflow(
    workflow: Any,
    *positional: Any,
    args: Sequence[Any] | None = None,
    id: str | None = None,
    task_queue: str | None = None,
    execution_timeout: timedelta | float | None = None,
    run_timeout: timedelta | float | None = None,
    task_timeout: timedelta | float | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
    retry_policy: RetryPolicy | None = None,
    memo: Mapping[str, Any] | None = None,
    result_type: Any = None,
) -> ChildWorkflowHandle:
    """Start a child workflow (its run method, class or type name) and return its
    handle once it has started. `id` defaults to a deterministic uuid, `task_queue` to
    this workflow's. The arguments go after the workflow, or as `args=[...]`
    (temporalio's form). An id a running workflow holds (or that `id_reuse_policy`
    refuses) raises `WorkflowAlreadyStartedError`."""
    machine = current_machine()
    if args is not None and positional:
        raise InvalidArgumentError("give the child's arguments positionally or as args=")
    if retry_policy is not None:
        raise InvalidArgumentError(
            "retry_policy is not supported for child workflows yet: retry inside the "
            "child, or catch ChildWorkflowError in the parent and start it again"
        )
    if not isinstance(parent_close_policy, ParentClosePolicy):
        raise InvalidArgumentError(
            f"parent_close_policy must be a ParentClosePolicy, not {parent_close_policy!r}"
        )
    input = StartChildWorkflowInput(
        workflow=workflow_type_name(workflow), args=list(args or positional), id=id,
        task_queue=task_queue, execution_timeout=execution_timeout, run_timeout=run_timeout,
        task_timeout=task_timeout, id_reuse_policy=id_reuse_policy,
        parent_close_policy=parent_close_policy, memo=memo, ret_type=result_type,
        workflow_ref=workflow)
    if outbound := interception.workflow_outbound(machine.hooks):  # sdk/interceptor.py
        return await outbound.start_child_workflow(input)
    return await start_child(input)


async def start_child(input: StartChildWorkflowInput) -> ChildWorkflowHandle:
    """Start the child `input` describes (with its headers: the interceptors' root)."""
    machine = current_machine()
    ref = input.workflow_ref
    workflow = ref if ref is not None and workflow_type_name(ref) == input.workflow \
        else input.workflow
    hints = with_result(
        untyped(input.workflow) if isinstance(workflow, str)
        else hints_of(workflow_definition(workflow).run_fn, method=True),
        input.ret_type,
    )
    child_id = check_id(input.id) if input.id is not None else str(machine.uuid4())
    queue = machine.info.task_queue if input.task_queue is None \
        else check_task_queue(input.task_queue)
    reuse = input.id_reuse_policy
    options = _options(WorkflowIDReusePolicy.ALLOW_DUPLICATE if reuse is None else reuse,
                       input.execution_timeout, input.run_timeout, input.task_timeout)
    if input.headers:
        # Recorded with the start command; the engine puts them on the child's
        # WorkflowExecutionStarted (85_handoff.lua), for its execute_workflow.
        options["header"] = interception.header_text(input.headers)
    policy = input.parent_close_policy
    if policy is None:
        policy = ParentClosePolicy.TERMINATE
    if not isinstance(policy, ParentClosePolicy):
        raise InvalidArgumentError(
            f"parent_close_policy must be a ParentClosePolicy, not {policy!r}")
    memo_payload = b"" if input.memo is None else machine.codec.encode(memo_to_wire(input.memo))
    child = machine.start_child(
        input.workflow,
        child_id,
        machine.codec.encode(hints.encode_args(list(input.args))),
        queue,
        policy,
        options,
        memo_payload,
        None if hints.result is Any else hints.decode_result,
    )
    await child.started
    return ChildWorkflowHandle(child)


async def execute_child_workflow(workflow: Any, *args: Any, **options: Any) -> Any:
    """Start a child workflow and wait for its result (options as
    `start_child_workflow`); raises `ChildWorkflowError(cause=...)` when it did not
    complete."""
    handle = await start_child_workflow(workflow, *args, **options)
    return await handle
