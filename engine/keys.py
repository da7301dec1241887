"""The whole key schema in one place (operators read these keys with redis-cli).

Every key that a state transition touches carries the hash tag of one *history shard*
(`{7}`), so each Redis Function call stays inside one Redis Cluster hash slot.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

DEFAULT_PREFIX = "redurable"
#: History shards of a new namespace. Each one is a hash slot's worth of keys (so a
#: cluster can spread a namespace over this many nodes); every shard costs workers a
#: stream to poll and a timer set to scan, so small is faster on a single server.
DEFAULT_SHARDS = 4
#: Consumer group that all workers of a task queue join.
GROUP = "workers"
#: Suffixes of a workflow's other keys after its state hash `...:wf:<id>`. A workflow
#: id may not end with one (engine.validate.check_id): the hash of id "x:history"
#: would be the history stream of workflow "x" whenever both fall in one shard.
HISTORY_SUFFIX = ":history"
BUFFER_SUFFIX = ":buffer"
WORKFLOW_KEY_SUFFIXES = (HISTORY_SUFFIX, BUFFER_SUFFIX)
#: Likewise for task queues (engine.validate.check_task_queue): `workers:<queue>` + this
#: is the queue's worker-info hash.
WORKER_INFO_SUFFIX = ":info"


@functools.lru_cache(maxsize=65536)
def shard_of(workflow_id: str, shards: int) -> int:
    """Stable shard of a workflow id: crc32 so every client and worker agrees."""
    return zlib.crc32(workflow_id.encode()) % shards


@dataclass(frozen=True)
class Keys:
    """Key names of one namespace (prefix) with a fixed number of history shards."""

    prefix: str = DEFAULT_PREFIX
    shards: int = DEFAULT_SHARDS

    def shard_tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def shard(self, workflow_id: str) -> int:
        return shard_of(workflow_id, self.shards)

    # --- per workflow -------------------------------------------------------------
    def workflow(self, workflow_id: str) -> str:
        """Hash with the mutable state of the workflow's current run."""
        return f"{self.shard_tag(self.shard(workflow_id))}:wf:{workflow_id}"

    def history(self, workflow_id: str) -> str:
        """Stream with one entry per history event."""
        return self.workflow(workflow_id) + HISTORY_SUFFIX

    def buffer(self, workflow_id: str) -> str:
        """List of events that arrived while a workflow task was running."""
        return self.workflow(workflow_id) + BUFFER_SUFFIX

    # --- per shard ----------------------------------------------------------------
    def workflow_tasks(self, shard: int, task_queue: str) -> str:
        return f"{self.shard_tag(shard)}:tq:{task_queue}:wf"

    def activity_tasks(self, shard: int, task_queue: str) -> str:
        return f"{self.shard_tag(shard)}:tq:{task_queue}:act"

    def timers(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:timers"

    def dead_letters(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:dlq"

    def index_start(self, shard: int) -> str:
        """All workflows of the shard by start time."""
        return f"{self.shard_tag(shard)}:index:start"

    def index_status(self, shard: int, status: str) -> str:
        return f"{self.shard_tag(shard)}:index:status:{status}"

    def index_type(self, shard: int, workflow_type: str) -> str:
        return f"{self.shard_tag(shard)}:index:type:{workflow_type}"

    def closed_channel(self, shard: int) -> str:
        """Pub/sub channel on which a shard announces workflow ids whose run closed."""
        return f"{self.shard_tag(shard)}:closed"

    def shard_prefix(self, shard: int) -> str:
        """What the Lua functions prepend to build keys of the same shard."""
        return self.shard_tag(shard) + ":"

    # --- per namespace (single-key operations only) -------------------------------
    def workers(self, task_queue: str) -> str:
        """Zset of worker id -> last heartbeat (ms)."""
        return f"{self.prefix}:workers:{task_queue}"

    def worker_info(self, task_queue: str) -> str:
        """Hash of worker id -> JSON (host, pid, registered types and queries)."""
        return f"{self.prefix}:workers:{task_queue}{WORKER_INFO_SUFFIX}"

    def worker_presence(self, worker_id: str) -> str:
        """Pub/sub channel a live worker stays subscribed to. The server drops the
        subscription the instant the worker's process dies (its socket closes), so
        `PUBSUB NUMSUB` tells a dead worker from a slow one without waiting for its
        heartbeat to go stale."""
        return f"{self.prefix}:presence:{worker_id}"

    def queries(self, task_queue: str) -> str:
        """Stream of query requests for the workers of a task queue."""
        return f"{self.prefix}:tq:{task_queue}:queries"

    def query_reply(self, request_id: str) -> str:
        return f"{self.prefix}:reply:{request_id}"

    def task_queues(self) -> str:
        """Set of task queue names that ever had a workflow started on them."""
        return f"{self.prefix}:task_queues"
