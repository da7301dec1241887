"""The public API is what sdk/__init__.py, sdk.workflow and sdk.activity export: pinned
here so that adding or removing a name is a deliberate change (like Temporal's
tests/test_workflow_exports.py)."""

from __future__ import annotations

import builtins
import inspect
import types

import sdk
from sdk import activity, testing, workflow

SDK_ALL = [
    "ActivityCancellationType",
    "ActivityError",
    "ActivityInboundInterceptor",
    "ActivityNotFoundError",
    "ActivityOutboundInterceptor",
    "ActivityTimeoutError",
    "AesGcmCodec",
    "ApplicationError",
    "AsyncActivityCancelledError",
    "AsyncActivityHandle",
    "CancelWorkflowInput",
    "CancelledError",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "ClientInterceptor",
    "CompressionCodec",
    "Durability",
    "DurabilityError",
    "ExecuteActivityInput",
    "ExecuteWorkflowInput",
    "ExternalWorkflowHandle",
    "FailureError",
    "HandleQueryInput",
    "HandleSignalInput",
    "HandleUpdateInput",
    "HistoryEvent",
    "InvalidArgumentError",
    "InvalidQueryError",
    "MsgpackCodec",
    "NondeterminismError",
    "OutboundInterceptor",
    "ParentClosePolicy",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "QueryError",
    "QueryFailedError",
    "QueryTimeoutError",
    "QueryWorkflowInput",
    "RedurableError",
    "Replayer",
    "RetryConfig",
    "RetryPolicy",
    "Schedule",
    "ScheduleActionExecutionStartWorkflow",
    "ScheduleActionResult",
    "ScheduleActionStartWorkflow",
    "ScheduleAlreadyRunningError",
    "ScheduleBackfill",
    "ScheduleCalendarSpec",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleInfo",
    "ScheduleIntervalSpec",
    "ScheduleListActionStartWorkflow",
    "ScheduleListDescription",
    "ScheduleListInfo",
    "ScheduleListSchedule",
    "ScheduleNotFoundError",
    "ScheduleOverlapPolicy",
    "SchedulePolicy",
    "ScheduleRange",
    "ScheduleSpec",
    "ScheduleState",
    "ScheduleUpdate",
    "ScheduleUpdateConflictError",
    "ScheduleUpdateInput",
    "SearchAttributeIndexedValueType",
    "SearchAttributeKey",
    "SearchAttributePair",
    "SearchAttributeUpdate",
    "ServerUnavailableError",
    "SignalChildWorkflowInput",
    "SignalExternalWorkflowInput",
    "SignalWorkflowInput",
    "StartActivityInput",
    "StartChildWorkflowInput",
    "StartLocalActivityInput",
    "StartWorkflowInput",
    "StartWorkflowUpdateInput",
    "TerminateWorkflowInput",
    "TerminatedError",
    "TypedSearchAttributes",
    "UnknownQueryError",
    "Worker",
    "WorkerInterceptor",
    "WorkflowAlreadyStartedError",
    "WorkflowContinuedAsNewError",
    "WorkflowDescription",
    "WorkflowExecution",
    "WorkflowExecutionCount",
    "WorkflowExecutionStatus",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowHistory",
    "WorkflowIDConflictPolicy",
    "WorkflowIDReusePolicy",
    "WorkflowInboundInterceptor",
    "WorkflowInterceptorClassInput",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowOutboundInterceptor",
    "WorkflowTimeoutError",
    "WorkflowUpdateFailedError",
    "WorkflowUpdateHandle",
    "WorkflowUpdateStage",
    "activity",
    "codec_from_env",
    "configure_logging",
    "workflow",
]

WORKFLOW_ALL = [
    "ActivityCancellationType",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "ExternalWorkflowHandle",
    "ParentClosePolicy",
    "ParentInfo",
    "UpdateMethodMultiParam",
    "WorkflowInfo",
    "all_handlers_finished",
    "continue_as_new",
    "defn",
    "deprecate_patch",
    "execute_activity",
    "execute_activity_method",
    "execute_child_workflow",
    "execute_local_activity",
    "execute_local_activity_method",
    "get_external_workflow_handle",
    "info",
    "is_replaying",
    "logger",
    "memo",
    "memo_value",
    "now",
    "patched",
    "query",
    "random",
    "run",
    "signal",
    "sleep",
    "start_activity",
    "start_activity_method",
    "start_child_workflow",
    "start_local_activity",
    "start_local_activity_method",
    "update",
    "upsert_search_attributes",
    "uuid4",
    "wait_condition",
]

ACTIVITY_ALL = [
    "ActivityInfo",
    "defn",
    "heartbeat",
    "in_activity",
    "info",
    "is_cancelled",
    "is_worker_shutdown",
    "logger",
    "raise_complete_async",
    "wait_for_cancelled_sync",
    "wait_for_worker_shutdown",
    "wait_for_worker_shutdown_sync",
]

TESTING_ALL = [
    "ActivityEnvironment",
    "Replayer",
    "WorkflowEnvironment",
    "WorkflowHistory",
    "WorkflowReplayResult",
    "WorkflowReplayResults",
    "running_worker",
]


def test_sdk_exports() -> None:
    assert sorted(sdk.__all__) == SDK_ALL


def test_testing_exports() -> None:
    assert sorted(testing.__all__) == TESTING_ALL
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    assert testing.Replayer is sdk.Replayer


def test_workflow_exports() -> None:
    assert sorted(workflow.__all__) == WORKFLOW_ALL


def test_activity_exports() -> None:
    assert sorted(activity.__all__) == ACTIVITY_ALL


def test_exports_resolve_and_are_unique() -> None:
    for module in (sdk, workflow, activity):
        assert len(set(module.__all__)) == len(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_no_public_name_outside_all() -> None:
    """Every public attribute of the package root is exported (or a submodule)."""
    leaked = [
        name
        for name, value in vars(sdk).items()
        if not name.startswith("_")
        and name not in sdk.__all__
        and not isinstance(value, types.ModuleType)
    ]
    assert leaked == []


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from sdk import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == SDK_ALL


def test_exported_errors_share_one_root() -> None:
    errors = [
        getattr(sdk, name)
        for name in SDK_ALL
        if inspect.isclass(getattr(sdk, name)) and issubclass(getattr(sdk, name), BaseException)
    ]
    assert len(errors) == 30
    for error in errors:
        assert issubclass(error, sdk.RedurableError), error
    # Never shadow the builtins: no exported error is named like one.
    assert not [e.__name__ for e in errors if hasattr(builtins, e.__name__)]


def test_public_api_is_async() -> None:
    """Stay async: no sync twins of client or handle calls."""
    for cls in (sdk.Client, sdk.WorkflowHandle, sdk.AsyncActivityHandle, sdk.ScheduleHandle):
        for name, member in vars(cls).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            # Handles are made without I/O, as temporalio's; fetch_history returns an
            # object that is awaited (temporalio's form) or iterated with `async for`.
            if name in ("get_workflow_handle", "get_workflow_handle_for",
                        "get_async_activity_handle", "fetch_history", "get_schedule_handle",
                        "get_workflow_update_handle"):
                continue
            assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), (
                f"{cls.__name__}.{name} is not async"
            )
