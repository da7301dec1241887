"""One-write activity steps on the workflow-task side (docs/design-notes.md "One-write
activity steps"): the call that ends an activity attempt together with its workflow's
next step (built by Activations.one_write), and applying that call's reply to the
sticky cache. Apart from sdk/worker/workflow_tasks.py, which polls and runs workflow
tasks: these steps never pass through its poller or its batch lock."""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from engine.store import Call
from sdk.worker.activations import Activations, OneWrite
from sdk.worker.activity_tasks import ActivityTasks
from sdk.worker.plumbing import TaskPlumbing
from sdk.worker.task_entry import TaskEntry
from sdk.worker.workflow_runner import StickyCache

log = structlog.get_logger("redurable.worker")


class OneWriteSteps:
    """The one-write steps in flight of one worker, by their activity task."""

    def __init__(
        self,
        plumbing: TaskPlumbing,
        activations: Activations,
        cache: StickyCache,
        activities: ActivityTasks,
    ) -> None:
        self._plumbing = plumbing
        self._store = plumbing.store
        self.activations = activations
        self.cache = cache
        self._activities = activities
        #: One-write activity steps in flight, by their activity task (stream, entry id).
        self._one_writes: dict[tuple[str, str], OneWrite] = {}

    def one_write(self, task: TaskEntry, result: bytes, server_ms: int | None,
                  failure: dict[str, Any] | None = None) -> Call | None:
        """The call that ends an activity attempt (completed, or failed for the last
        time) with its workflow's next step, or None (the plain completion)."""
        step = self.activations.one_write(task, result, server_ms, failure)
        if step is None:
            return None
        self._one_writes[(task.stream, task.msg_id)] = step
        return step.call

    def settle_one_write(self, call: Call, reply: Any) -> tuple[TaskEntry | None, int | None]:
        """Apply a one-write step's reply. Returns the workflow task to start the normal
        way (the speculation was refused: the completion queued one for us) and the
        server's time of the write (for the worker's estimate of the server clock)."""
        assert call.task is not None
        plumbing = self._plumbing
        step = self._one_writes.pop((call.task.stream, call.task.msg_id))
        self.activations.one_write_promised -= step.slots
        wf_id, run_id = step.cached.machine.info.workflow_id, step.cached.machine.info.run_id
        # Ours still (not evicted, not replaced by a replay meanwhile): the reply is its.
        mine = self.cache.get(wf_id, run_id) is step.cached
        step.cached.ahead = False
        try:
            done = self._store.parse_act_complete_wft(reply)
        except RedisError as exc:
            log.error("activity_completion_failed", workflow_id=wf_id, error=str(exc))
            done = None
        if done is None or done.commit is None:
            if mine:
                self.cache.evict(wf_id)  # its machine ran ahead of what was written
            if done is None:
                return None, None
            plumbing.stats["one_write_refused"] += 1
            plumbing.stats[f"one_write_refused_{done.refused}"] += 1  # why: the Lua's word
            if done.eager is None:
                return None, done.server_ms
            handed = TaskEntry(*done.eager)
            handed.no_speculation = True
            return handed, done.server_ms
        commit = done.commit
        plumbing.stats["one_write_steps"] += 1
        if call.function == "rd_act_fail_wft":
            plumbing.stats["one_write_failures"] += 1
        plumbing.stats["cache_hits"] += 1  # an activation on the cached run, no replay
        if plumbing.metrics is not None:
            plumbing.metrics.one_write_step(step.cached.machine.info.workflow_type,
                                            time.perf_counter() - step.began)
        plumbing.stats["workflow_tasks"] += 1
        if commit.eager:
            plumbing.stats["eager_activities"] += len(commit.eager)
            self._activities.start(plumbing.screened([TaskEntry(*e) for e in commit.eager]))
        if not mine or commit.closed or commit.close_dropped:
            if mine:
                self.cache.evict(wf_id)
            return None, done.server_ms
        step.cached.machine.committed(commit.last_event_id)
        step.cached.committed_id = commit.last_event_id
        step.cached.committed_ms = commit.server_ms
        step.cached.cursor = commit.last_stream_id
        return None, done.server_ms
