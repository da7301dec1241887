"""Answering queries: a worker of the workflow's task queue runs the query against the
workflow's state, from its sticky cache when that is up to date, else by replaying the
history (so closed workflows can be queried too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from engine.errors import UnknownQueryError
from engine.keys import GROUP
from sdk._definitions import WorkflowDefinition
from sdk.client.client import Client
from sdk.worker.task_entry import TaskEntry
from sdk.worker.workflow_runner import StickyCache, has_new_activation, new_machine


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
        # The deadline is on the server's clock: the request's entry id (the time the
        # server added it) plus the client's timeout.
        timeout_ms = task.fields.get(b"timeout_ms", b"")
        # Expired (the client gave up: queries sent before any worker ran), or malformed
        # (nobody to answer): drop it.
        if (not timeout_ms.isdigit() or b"reply" not in task.fields
                or int(task.msg_id.split("-")[0]) + int(timeout_ms) < self._server_ms()):
            await redis.xack(task.stream, GROUP, task.msg_id)
            await redis.xdel(task.stream, task.msg_id)
            return
        try:
            answer = await self._query_answer(task)
        except Exception as exc:  # a query must always get an answer
            answer = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
        reply_key = task.get("reply")
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(reply_key, msgpack.packb(answer, use_bin_type=True))
        pipe.expire(reply_key, 60)
        pipe.xack(task.stream, GROUP, task.msg_id)
        pipe.xdel(task.stream, task.msg_id)
        await pipe.execute()

    async def _query_answer(self, task: TaskEntry) -> dict[str, Any]:
        wf_id = task.get("workflow_id")
        row: Any = await self.client.redis.hmget(self.keys.workflow(wf_id), "run_id", "type")
        run_id_raw, type_raw = row
        if run_id_raw is None:
            return {"status": "not_found"}
        run_id, wf_type = run_id_raw.decode(), type_raw.decode()
        definition = self._workflows.get(wf_type)
        if definition is None:
            return {
                "status": "failed",
                "message": f"workflow type {wf_type!r} is not registered on this worker",
            }
        codec = self.client.codec
        args = codec.decode(task.fields[b"args"])
        machine = None
        cached = self.cache.get(wf_id, run_id)
        if cached is not None:
            newer = await self.store.read_history(wf_id, cached.cursor)
            if not has_new_activation([e for _, e in newer]):
                machine = cached.machine
        if machine is None:
            entries = await self.store.read_history(wf_id)
            machine = new_machine(definition, wf_id, run_id, self.task_queue, codec)
            machine.replay([e for _, e in entries])
        try:
            value = machine.query(task.get("name"), list(args))
        except UnknownQueryError:
            return {"status": "unknown_query", "known": sorted(definition.queries)}
        except Exception as exc:
            return {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
        return {"status": "ok", "payload": codec.encode(value)}
