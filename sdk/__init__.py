"""redurable: durable execution for Python on Redis Streams.

from sdk import workflow, activity, Client, Worker, RetryPolicy, ApplicationError
"""

from engine.codec import MsgpackCodec, PayloadCodec
from engine.errors import (
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    CancelledError,
    FailureError,
    InvalidArgumentError,
    NondeterminismError,
    PayloadError,
    QueryError,
    QueryFailedError,
    QueryTimeoutError,
    RedurableError,
    TerminatedError,
    UnknownQueryError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from sdk import activity, workflow
from sdk._client import (
    Client,
    HistoryEvent,
    PendingActivity,
    WorkflowDescription,
    WorkflowExecution,
    WorkflowHandle,
)
from sdk._log import configure_logging
from sdk._retry import RetryPolicy
from sdk._worker import Worker

__all__ = [
    "ActivityError",
    "ActivityTimeoutError",
    "ApplicationError",
    "CancelledError",
    "Client",
    "FailureError",
    "HistoryEvent",
    "InvalidArgumentError",
    "MsgpackCodec",
    "NondeterminismError",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "QueryError",
    "QueryFailedError",
    "QueryTimeoutError",
    "RedurableError",
    "RetryPolicy",
    "TerminatedError",
    "UnknownQueryError",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowDescription",
    "WorkflowExecution",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "activity",
    "configure_logging",
    "workflow",
]
