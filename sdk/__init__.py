"""redurable: durable execution for Python on Redis Streams.

from sdk import workflow, activity, Client, Worker, RetryPolicy, ApplicationError
"""

from engine.activities import ActivityCancellationType
from engine.children import ParentClosePolicy
from engine.codec import MsgpackCodec, PayloadCodec
from engine.codec_chain import AesGcmCodec, CompressionCodec
from engine.durability import Durability
from engine.errors import (
    ActivityError,
    ActivityNotFoundError,
    ActivityTimeoutError,
    ApplicationError,
    AsyncActivityCancelledError,
    CancelledError,
    ChildWorkflowError,
    DurabilityError,
    FailureError,
    InvalidArgumentError,
    NondeterminismError,
    PayloadError,
    QueryError,
    QueryFailedError,
    QueryTimeoutError,
    RedurableError,
    ServerUnavailableError,
    TerminatedError,
    UnknownQueryError,
    WorkflowAlreadyStartedError,
    WorkflowContinuedAsNewError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowTimeoutError,
    WorkflowUpdateFailedError,
)
from engine.reconnect import RetryConfig
from engine.schedule_spec import (
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from engine.schedules import (
    ScheduleAlreadyRunningError,
    ScheduleNotFoundError,
    ScheduleUpdateConflictError,
)
from engine.search_attributes import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from engine.start_options import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from engine.status import WorkflowExecutionStatus
from engine.updates import WorkflowUpdateStage
from engine.visibility_query import InvalidQueryError
from sdk import activity, workflow
from sdk._child_workflows import ChildWorkflowHandle, ExternalWorkflowHandle
from sdk._log import configure_logging
from sdk._replayer import Replayer
from sdk._retry import RetryPolicy
from sdk.client.async_activity import AsyncActivityHandle
from sdk.client.client import Client
from sdk.client.codec_config import codec_from_env
from sdk.client.handle import WorkflowHandle
from sdk.client.history import WorkflowHistory
from sdk.client.schedule_types import (
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleInfo,
    ScheduleListActionStartWorkflow,
    ScheduleListDescription,
    ScheduleListInfo,
    ScheduleListSchedule,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from sdk.client.schedules import ScheduleHandle
from sdk.client.types import HistoryEvent, PendingActivity, WorkflowDescription, WorkflowExecution
from sdk.client.update_handle import WorkflowUpdateHandle
from sdk.client.visibility import WorkflowExecutionCount
from sdk.interceptor import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    CancelWorkflowInput,
    ClientInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartActivityInput,
    StartWorkflowInput,
    TerminateWorkflowInput,
    WorkerInterceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from sdk.worker.worker import Worker

__all__ = [
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
    "SignalWorkflowInput",
    "StartActivityInput",
    "StartWorkflowInput",
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
