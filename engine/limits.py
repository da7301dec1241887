"""Limits that keep one workflow from growing without bound (docs/reliability.md).

The history limit is enforced in the Lua library (engine/lua/00_common.lua keeps the
same number: a unit test checks they agree) where events are appended; the pending
activity limit in the replay machine, where workflow code schedules activities.
"""

from __future__ import annotations

from engine.codec import DEFAULT_PAYLOAD_LIMIT

#: Events one run's history may reach. A workflow task completion that would go past it
#: terminates the run (reason: history limit; continue-as-new instead), unless the
#: completion closes the run; signals to a run at the limit are refused. Per run, the
#: field `max_events` of the workflow's state hash overrides it (operators, tests).
MAX_HISTORY_EVENTS = 50_000
#: Activities one run may have scheduled and not yet finished. One more raises
#: ApplicationError(type="PendingActivityLimit") where workflow code schedules it.
MAX_PENDING_ACTIVITIES = 2_000
#: How long a shard remembers the request id of a client call it applied (start,
#: signal, cancel, terminate), so that the call retried after a lost reply is not
#: applied twice. A client retries for at most its RetryConfig's
#: max_elapsed_time_millis (engine/reconnect.py), at most half of this.
REQUEST_ID_WINDOW_MS = 600_000
#: How long the closed runs of a run chain (continue-as-new, cron) stay readable by
#: their run id, unless the namespace sets its own (`Client.connect(run_retention=)`,
#: stored in `<prefix>:config`); the same number in engine/lua/15_run_chain.lua.
DEFAULT_RUN_RETENTION_MS = 7 * 24 * 3600 * 1000
#: Bytes of one encoded payload (arguments, result, signal input, heartbeat details).
MAX_PAYLOAD_BYTES = DEFAULT_PAYLOAD_LIMIT

__all__ = [
    "DEFAULT_RUN_RETENTION_MS", "MAX_HISTORY_EVENTS", "MAX_PAYLOAD_BYTES",
    "MAX_PENDING_ACTIVITIES", "REQUEST_ID_WINDOW_MS",
]
