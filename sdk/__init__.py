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
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowTimeoutError,
)
from engine.reconnect import RetryConfig
from engine.start_options import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from engine.status import WorkflowExecutionStatus
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
from sdk.client.types import HistoryEvent, PendingActivity, WorkflowDescription, WorkflowExecution
from sdk.worker.worker import Worker

__all__ = [
    "ActivityCancellationType",
    "ActivityError",
    "ActivityNotFoundError",
    "ActivityTimeoutError",
    "AesGcmCodec",
    "ApplicationError",
    "AsyncActivityCancelledError",
    "AsyncActivityHandle",
    "CancelledError",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "CompressionCodec",
    "Durability",
    "DurabilityError",
    "ExternalWorkflowHandle",
    "FailureError",
    "HistoryEvent",
    "InvalidArgumentError",
    "MsgpackCodec",
    "NondeterminismError",
    "ParentClosePolicy",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "QueryError",
    "QueryFailedError",
    "QueryTimeoutError",
    "RedurableError",
    "Replayer",
    "RetryConfig",
    "RetryPolicy",
    "ServerUnavailableError",
    "TerminatedError",
    "UnknownQueryError",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowDescription",
    "WorkflowExecution",
    "WorkflowExecutionStatus",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowHistory",
    "WorkflowIDConflictPolicy",
    "WorkflowIDReusePolicy",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowTimeoutError",
    "activity",
    "codec_from_env",
    "configure_logging",
    "workflow",
]
