"""The whole key schema in one place (operators read these keys with redis-cli).

Every key that a state transition touches carries the hash tag of one *history shard*
(`{7}`), so each Redis Function call stays inside one Redis Cluster hash slot.
"""

from __future__ import annotations

import functools
import re
import string
import uuid
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
UPDATES_SUFFIX = ":updates"
UPDATE_INBOX_SUFFIX = ":updates:admitted"
WORKFLOW_KEY_SUFFIXES = (HISTORY_SUFFIX, BUFFER_SUFFIX, UPDATES_SUFFIX, UPDATE_INBOX_SUFFIX)
#: Likewise for task queues (engine.validate.check_task_queue): `workers:<queue>` + this
#: is the queue's worker-info hash.
WORKER_INFO_SUFFIX = ":info"


#: Two key names no one writes. Put after a hash tag (`{7}rd-slot-probe-1`), they ask,
#: inside a Function, whether that tag's slot is moving between Redis Cluster nodes
#: (engine/lua/00_common.lua `slot_moving`).
SLOT_PROBE_KEYS = ("rd-slot-probe-1", "rd-slot-probe-2")


#: The keys of one history shard, as templates after the shard's prefix
#: (`Keys.shard_prefix`, "redurable:{7}:"). Keys builds them in Python, and
#: lua_key_helpers() writes the same templates as the Lua functions the library builds
#: keys with (those named by stored state: a run's task queue, status or type, a timer's
#: workflow id), so the two cannot disagree.
SHARD_KEYS: dict[str, str] = {
    #: Hash with the mutable state of the workflow's current run.
    "workflow": "wf:{workflow_id}",
    #: Stream with one entry per history event.
    "history": "wf:{workflow_id}" + HISTORY_SUFFIX,
    #: List of events that arrived while a workflow task was running.
    "buffer": "wf:{workflow_id}" + BUFFER_SUFFIX,
    #: Hash of the workflow's updates: update id -> its state (engine/updates.py:
    #: run, stage, name, input, outcome), kept so the same id is applied once.
    "updates": "wf:{workflow_id}" + UPDATES_SUFFIX,
    #: List of the ids of updates admitted but not yet accepted or rejected by a
    #: workflow task, in arrival order (what rd_wft_start hands the worker).
    "update_inbox": "wf:{workflow_id}" + UPDATE_INBOX_SUFFIX,
    "workflow_tasks": "tq:{task_queue}:wf",
    #: Workflow tasks for one worker: the owner of the workflows it ran last (sticky
    #: routing, docs/design-notes.md "Sticky workflows"). `sticky` is the worker's
    #: sticky name (Keys.sticky_name): no ':' in it, so the key reads back unambiguously.
    "sticky_tasks": "sticky:{task_queue}:{sticky}",
    "activity_tasks": "tq:{task_queue}:act",
    "timers": "timers",
    #: The deadlines of sticky tasks ('K' members: an owner must start its task by
    #: then), apart from `timers`: they are many, nearly all removed before they fall
    #: due, and the timer loop must not wake for each one.
    "sticky_timers": "timers:sticky",
    #: String: the worker id that scans the shard's timers now (sdk/worker/
    #: timer_leases.py), with a short TTL renewed by its scans. The others skip the
    #: shard, and take it over when the lease lapses or its holder is seen dead.
    "timer_lease": "timers:lease",
    #: Stream of wake entries (`due_in` ms after `at`, server clock): a client's call
    #: added a timer that falls due soon (engine/lua/00_common.lua wake_for_timers).
    #: Every worker's workflow poller reads it (consumer group GROUP) in the read it
    #: blocks on, and the one that gets an entry scans for it (sdk/worker/timer_wakes.py).
    "timer_wake": "timers:wake",
    "dead_letters": "dlq",
    #: All workflows of the shard by start time.
    "index_start": "index:start",
    "index_status": "index:status:{status}",
    "index_type": "index:type:{workflow_type}",
    #: Closed workflows by close time (score: close time, ms).
    "index_close": "index:close",
    #: Search attributes (engine/search_attributes.py, docs/visibility.md). The set of
    #: "<name>:<TYPE>" pairs the shard has seen: what a query resolves names against.
    "sa_types": "index:sa",
    #: Workflows with `attribute` of type `sa_type`: scored by the value for INT,
    #: DOUBLE and DATETIME (epoch ms), else by start time.
    "sa_values": "index:sa:{attribute}:{sa_type}",
    #: Workflows whose KEYWORD, KEYWORD_LIST or BOOL attribute holds `value`, by start time.
    "sa_value": "index:sa:{attribute}:{sa_type}:{value}",
    #: Pub/sub channel on which a shard announces workflow ids whose run closed.
    "closed_channel": "closed",
    #: Pub/sub channel on which a shard announces "<workflow id>\n<update id>" when an
    #: update of one of its workflows is accepted, rejected or completed.
    "updates_channel": "updates",
    #: Zset of the request ids of client calls the shard applied (start, signal,
    #: cancel, terminate) -> when (ms, server clock): a call retried after a lost
    #: reply finds its id and is answered as the first time, not applied again.
    #: Ids older than REQUEST_ID_WINDOW_MS (engine/limits.py) are trimmed.
    "requests": "requests",
    #: Hash with the whole state of one schedule (in the shard of the schedule id;
    #: engine/lua/90_schedule.lua lists its fields).
    "schedule": "schedule:{schedule_id}",
    #: Zset of the shard's schedule ids -> when a worker should next look at each
    #: (next fire time, a pending start's lease, now for a trigger; +inf: nothing due).
    "schedules": "schedules",
    #: A closed run of a run chain (continue-as-new, cron), kept for the namespace's
    #: run retention (engine/run_chain.py): a copy of the run's state hash as it closed
    #: (plus `new_execution_run_id`, the run that followed), and its history stream,
    #: renamed from the workflow's. Under `run:`, not `wf:<id>:`, so no workflow id can
    #: name one of these keys (run ids are hex, without ':').
    "closed_run": "run:{run_id}",
    "closed_run_history": "run:{run_id}" + HISTORY_SUFFIX,
    #: Stream of hand-offs to other shards (docs/design-notes.md "Cross-shard
    #: hand-off"): a transition that must change another shard (start a child, report
    #: its close to the parent, signal or cancel another workflow) adds an entry here in
    #: the same atomic call; workers apply each one in the target shard, then XACK.
    "outbox": "outbox",
}


def sticky_name(identity: str) -> str:
    """A worker's name in its sticky keys: its identity made key-safe (no ':', which
    separates the key's parts), plus a random part, so two processes never share one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", identity)[:80]
    return f"{safe}-{uuid.uuid4().hex[:8]}"


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

    def shard_prefix(self, shard: int) -> str:
        """What every key of the shard starts with; the Lua functions get it as ARGV[1]
        (or the `prefix` argument) and build the shard's other keys from it."""
        return self.shard_tag(shard) + ":"

    def _in_shard(self, shard: int, name: str, **params: str) -> str:
        return self.shard_prefix(shard) + SHARD_KEYS[name].format(**params)

    # --- per workflow (in the workflow id's shard) --------------------------------
    def workflow(self, workflow_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "workflow", workflow_id=workflow_id)

    def history(self, workflow_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "history", workflow_id=workflow_id)

    def buffer(self, workflow_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "buffer", workflow_id=workflow_id)

    def updates(self, workflow_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "updates", workflow_id=workflow_id)

    def update_inbox(self, workflow_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "update_inbox", workflow_id=workflow_id)

    def closed_run(self, workflow_id: str, run_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "closed_run", run_id=run_id)

    def closed_run_history(self, workflow_id: str, run_id: str) -> str:
        return self._in_shard(self.shard(workflow_id), "closed_run_history", run_id=run_id)

    # --- per shard ----------------------------------------------------------------
    def workflow_tasks(self, shard: int, task_queue: str) -> str:
        return self._in_shard(shard, "workflow_tasks", task_queue=task_queue)

    def sticky_tasks(self, shard: int, task_queue: str, sticky: str) -> str:
        return self._in_shard(shard, "sticky_tasks", task_queue=task_queue, sticky=sticky)

    def activity_tasks(self, shard: int, task_queue: str) -> str:
        return self._in_shard(shard, "activity_tasks", task_queue=task_queue)

    def timers(self, shard: int) -> str:
        return self._in_shard(shard, "timers")

    def sticky_timers(self, shard: int) -> str:
        return self._in_shard(shard, "sticky_timers")

    def timer_lease(self, shard: int) -> str:
        return self._in_shard(shard, "timer_lease")

    def timer_wake(self, shard: int) -> str:
        return self._in_shard(shard, "timer_wake")

    def dead_letters(self, shard: int) -> str:
        return self._in_shard(shard, "dead_letters")

    def index_start(self, shard: int) -> str:
        return self._in_shard(shard, "index_start")

    def index_status(self, shard: int, status: str) -> str:
        return self._in_shard(shard, "index_status", status=status)

    def index_type(self, shard: int, workflow_type: str) -> str:
        return self._in_shard(shard, "index_type", workflow_type=workflow_type)

    def index_close(self, shard: int) -> str:
        return self._in_shard(shard, "index_close")

    def sa_types(self, shard: int) -> str:
        return self._in_shard(shard, "sa_types")

    def sa_values(self, shard: int, attribute: str, sa_type: str) -> str:
        return self._in_shard(shard, "sa_values", attribute=attribute, sa_type=sa_type)

    def sa_value(self, shard: int, attribute: str, sa_type: str, value: str) -> str:
        return self._in_shard(shard, "sa_value", attribute=attribute, sa_type=sa_type,
                              value=value)

    def closed_channel(self, shard: int) -> str:
        return self._in_shard(shard, "closed_channel")

    def updates_channel(self, shard: int) -> str:
        return self._in_shard(shard, "updates_channel")

    def requests(self, shard: int) -> str:
        return self._in_shard(shard, "requests")

    # --- schedules (in the shard of the schedule id) --------------------------------
    def schedule(self, schedule_id: str) -> str:
        return self._in_shard(self.shard(schedule_id), "schedule", schedule_id=schedule_id)

    def schedules(self, shard: int) -> str:
        return self._in_shard(shard, "schedules")

    def outbox(self, shard: int) -> str:
        return self._in_shard(shard, "outbox")

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

    def sticky_queries(self, task_queue: str, sticky: str) -> str:
        """Stream of query requests for one worker: those about the workflows it owns
        (answered from its cache). It exists only while the worker lives."""
        return f"{self.prefix}:sticky:{task_queue}:{sticky}:queries"

    def stream_dead_letters(self, stream: str) -> str:
        """Dead letters of a stream outside every shard (a task queue's query requests,
        a worker's sticky queries): hash-tagged with the stream's whole name (which has
        no tag of its own), so they share its Redis Cluster slot and rd_claim_from can
        move entries between them."""
        return f"{self.prefix}:{{{stream}}}:dlq"

    def query_reply(self, request_id: str) -> str:
        return f"{self.prefix}:reply:{request_id}"

    def task_queues(self) -> str:
        """Set of task queue names that ever had a workflow started on them."""
        return f"{self.prefix}:task_queues"

    def config(self) -> str:
        """Hash of the namespace's settings (`shards`), fixed when it is first used."""
        return f"{self.prefix}:config"

    def clock_offset(self) -> str:
        """Integer: ms the server's clock was skipped ahead by a time-skipping test
        environment (engine/time_skipping.py). Only ever on that environment's private
        server; the production library never reads it."""
        return f"{self.prefix}:testing:clock_offset_ms"


def lua_key_helpers() -> str:
    """Lua for the library's start (engine/functions.py): the consumer group's name, and
    one function `key_<name>(prefix, <params>)` per SHARD_KEYS template, and
    `key_slot_probes(tag)` (SLOT_PROBE_KEYS)."""
    lines = [
        "-- Generated from engine/keys.py (GROUP, SHARD_KEYS): the key schema's one source.",
        f"local GROUP = {_lua_string(GROUP)}",
    ]
    for name, template in SHARD_KEYS.items():
        params: list[str] = []
        parts = ["prefix"]
        for literal, param, _, _ in string.Formatter().parse(template):
            if literal:
                parts.append(_lua_string(literal))
            if param:
                params.append(param)
                parts.append(param)
        lines.append(f"local function key_{name}({', '.join(['prefix', *params])})")
        lines.append(f"  return {' .. '.join(parts)}")
        lines.append("end")
    probes = ", ".join(f"'{{' .. tag .. '}}{_lua_string(name)[1:-1]}'"
                       for name in SLOT_PROBE_KEYS)
    lines += ["local function key_slot_probes(tag)", f"  return {probes}", "end"]
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    # Key names are plain text (engine.validate refuses quotes, braces and control
    # characters in the parts users choose); a template with anything else is a bug.
    if not all(c.isalnum() or c in ":_-" for c in text):
        raise ValueError(f"unexpected character in key template text {text!r}")
    return f"'{text}'"
