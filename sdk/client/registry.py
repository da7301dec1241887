"""What the live workers of a task queue registered: workflow types with their signal
and query names, and activity types. Each worker's liveness beat writes its entry of the
worker-info hash; the CLI and the UI read it to say, before anything waits in vain, that
no live worker knows a type or a handler name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import Redis

from engine.keys import Keys

if TYPE_CHECKING:
    from sdk.client.client import Client

#: A worker that beat within this long is live (beats come every liveness_timeout/5, and
#: at least every third of this: sdk/worker/liveness.py);
#: older ones the UI shows as gone.
LIVE_WITHIN_MS = 15_000


@dataclass(frozen=True)
class Registry:
    """The union of what the live workers of one task queue registered."""

    task_queue: str
    live_workers: int
    #: workflow type -> signal names (an older worker registers none: not checked).
    signals: dict[str, set[str]] = field(default_factory=dict)
    #: workflow type -> query names
    queries: dict[str, set[str]] = field(default_factory=dict)
    activities: set[str] = field(default_factory=set)

    @property
    def workflow_types(self) -> set[str]:
        return set(self.queries) | set(self.signals)

    def type_problem(self, workflow_type: str) -> str | None:
        """One line saying why no live worker would run this workflow type, else None."""
        if self.live_workers == 0:
            return f"no live worker polls task queue {self.task_queue!r}"
        if workflow_type not in self.workflow_types:
            known = ", ".join(sorted(self.workflow_types)) or "none"
            return (
                f"no live worker on task queue {self.task_queue!r} knows workflow type "
                f"{workflow_type!r} (known: {known})"
            )
        return None

    def handler_problem(
        self, workflow_type: str, kind: Literal["signal", "query"], name: str
    ) -> str | None:
        """One line saying why no live worker would take this signal or query, else None."""
        problem = self.type_problem(workflow_type)
        if problem is not None:
            return problem
        names = (self.signals if kind == "signal" else self.queries).get(workflow_type)
        if names is None or name in names:
            return None  # no names registered (an older worker): nothing to say
        plural = "signals" if kind == "signal" else "queries"
        return (
            f"workflow {workflow_type} has no {kind} named {name!r} on the live workers of "
            f"task queue {self.task_queue!r} ({plural}: {', '.join(sorted(names)) or 'none'})"
        )


async def worker_infos(client: Client, task_queue: str) -> dict[str, dict[str, Any]]:
    """Every worker's entry (worker id -> info), live or not; entries that a Worker did
    not write are skipped."""
    raw: dict[Any, Any] = await client.redis.hgetall(client.keys.worker_info(task_queue))
    infos: dict[str, dict[str, Any]] = {}
    for worker_id, text in raw.items():
        try:
            info = json.loads(text)
        except ValueError:
            continue
        if isinstance(info, dict):
            infos[worker_id.decode(errors="replace")] = info
    return infos


async def live_workers(redis: Redis, keys: Keys, task_queue: str) -> list[bytes]:
    """Ids of the workers of `task_queue` that beat within LIVE_WITHIN_MS (server clock)."""
    now_s, now_us = await redis.time()
    since = int(now_s) * 1000 + int(now_us) // 1000 - LIVE_WITHIN_MS
    live: Any = await redis.zrangebyscore(keys.workers(task_queue), since, "+inf")
    return list(live)


async def live_registry(client: Client, task_queue: str) -> Registry:
    """What the workers that beat within LIVE_WITHIN_MS registered."""
    redis = client.redis
    live = await live_workers(redis, client.keys, task_queue)
    registry = Registry(task_queue, len(live))
    if not live:
        return registry
    for text in await redis.hmget(client.keys.worker_info(task_queue), live):
        try:
            info = json.loads(text) if text else None
        except ValueError:
            info = None
        if not isinstance(info, dict):
            continue
        for wf_type, queries in info.get("workflows", {}).items():
            registry.queries.setdefault(wf_type, set()).update(queries)
        for wf_type, signals in info.get("signals", {}).items():
            registry.signals.setdefault(wf_type, set()).update(signals)
        registry.activities.update(info.get("activities", []))
    return registry
