"""Answering queries: a worker of the workflow's task queue runs the query against the
workflow's state, from its sticky cache when that is up to date, else by replaying the
history (so closed workflows can be queried too). Either way the state has applied
every input accepted before the query (docs/design-notes.md, "Waiting for results and
queries")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import events as ev
from engine.errors import UnknownQueryError
from engine.keys import GROUP
from engine.machine import WorkflowMachine
from engine.query_wire import (
    QueryAnswer,
    QueryRequest,
    QueryStatus,
    decode_request,
    encode_answer,
)
from sdk._definitions import WorkflowDefinition
from sdk.client.client import Client
from sdk.worker.task_entry import TaskEntry
from sdk.worker.workflow_runner import StickyCache, new_machine


class QueryAnswerer:
    """Answers the query requests of one task queue for the workflow types it knows."""

    def __init__(
        self,
        client: Client,
        task_queue: str,
        workflows: dict[str, WorkflowDefinition],
        cache: StickyCache,
        server_ms: Callable[[], int],
    ) -> None:
        self.client = client
        self.store = client.store
        self.keys = client.keys
        self.task_queue = task_queue
        self._workflows = workflows
        self.cache = cache
        self._server_ms = server_ms

    async def answer(self, task: TaskEntry) -> None:
        """Answer one query request and acknowledge it (always: a query gets an answer,
        or is dropped when expired or malformed)."""
        redis = self.client.redis
        request = decode_request(task.fields)
        # Expired (the client gave up: queries sent before any worker ran), or malformed
        # (nobody to answer): drop it.
        if request is None or request.expired(task.msg_id, self._server_ms()):
            await redis.xack(task.stream, GROUP, task.msg_id)
            await redis.xdel(task.stream, task.msg_id)
            return
        try:
            answer = await self._query_answer(request)
        except Exception as exc:  # a query must always get an answer
            answer = QueryAnswer(QueryStatus.FAILED, message=f"{type(exc).__name__}: {exc}")
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(request.reply, encode_answer(answer))
        pipe.expire(request.reply, 60)
        pipe.xack(task.stream, GROUP, task.msg_id)
        pipe.xdel(task.stream, task.msg_id)
        await pipe.execute()

    async def _query_answer(self, request: QueryRequest) -> QueryAnswer:
        wf_id = request.workflow_id
        row: Any = await self.client.redis.hmget(self.keys.workflow(wf_id), "run_id", "type")
        run_id_raw, type_raw = row
        if run_id_raw is None:
            return QueryAnswer(QueryStatus.NOT_FOUND)
        run_id, wf_type = run_id_raw.decode(), type_raw.decode()
        definition = self._workflows.get(wf_type)
        if definition is None:
            return QueryAnswer(
                QueryStatus.FAILED,
                message=f"workflow type {wf_type!r} is not registered on this worker",
            )
        codec = self.client.codec
        args = codec.decode(request.args)
        machine = await self._state(definition, wf_id, run_id)
        try:
            value = machine.query(request.name, list(args))
        except UnknownQueryError:
            return QueryAnswer(QueryStatus.UNKNOWN_QUERY, known=tuple(sorted(definition.queries)))
        except Exception as exc:
            return QueryAnswer(QueryStatus.FAILED, message=f"{type(exc).__name__}: {exc}")
        return QueryAnswer(QueryStatus.OK, payload=codec.encode(value))

    async def _state(
        self, definition: WorkflowDefinition, wf_id: str, run_id: str
    ) -> WorkflowMachine:
        """The machine to answer from: it has seen every input accepted so far. The
        cached machine when nothing came after what it applied; else a throwaway one
        that replays the history and applies the inputs no workflow task has applied
        yet (the history's trailing ones and the buffered ones), never the cached one,
        so a query writes nothing and moves no state."""
        cached = self.cache.get(wf_id, run_id)
        if cached is not None:
            newer, buffered = await self.store.read_query_inputs(wf_id, cached.cursor)
            if not newer and not buffered:
                return cached.machine
        entries, buffered = await self.store.read_query_inputs(wf_id)
        events = [e for _, e in entries]
        next_id = events[-1].event_id + 1 if events else 1
        pending = [ev.decode_buffered_event(raw, next_id + i) for i, raw in enumerate(buffered)]
        machine = self._new_machine(definition, wf_id, run_id)
        try:
            machine.preview(events + pending, self._server_ms())
        except Exception:
            # The inputs fail the workflow task too (a bug the task retries until it is
            # fixed): answer from the state the last activation left, as before.
            machine = self._new_machine(definition, wf_id, run_id)
            machine.replay(events)
        return machine

    def _new_machine(
        self, definition: WorkflowDefinition, wf_id: str, run_id: str
    ) -> WorkflowMachine:
        return new_machine(definition, wf_id, run_id, self.task_queue, self.client.codec)
