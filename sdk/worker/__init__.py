"""The worker wing: polling a task queue, running workflow and activity tasks, answering
queries, and the liveness that lets live workers take over the tasks of dead ones."""

# temporalio's name: `temporalio.worker.Interceptor`.
from sdk.interceptor import WorkerInterceptor as Interceptor

__all__ = ["Interceptor"]
