"""The server-side clock of a time-skipping test environment (sdk.testing's
`WorkflowEnvironment.start_time_skipping`).

Every Redis Function reads the time through `now_ms()` (engine/lua/00_common.lua). A
time-skipping server runs a variant of the library: the same source with a few lines
appended that rebind `now_ms` to the server's TIME plus an offset kept in one key
(`Keys.clock_offset`). Timers, timeouts, retries, event timestamps and so
`workflow.now()` all follow the skipped clock, inside the Functions. The production
library is not touched: it never reads the key and pays nothing (docs/design-notes.md).

The variant reads a key that is not among a call's KEYS and not in the call's hash slot:
allowed on a standalone server, and the environment's server is always a private
standalone one. It reports the production library's version, so a Client connecting to
the environment's server keeps the variant rather than loading the library again.

`skip()` moves the clock: one script that, atomically, checks that nothing is in
flight (no task stream has an undelivered or unacknowledged entry: no workflow task,
activity or query is waiting or running), and then moves the offset forward to the
earliest due timer (or to a limit, for `env.sleep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.functions import library_source
from engine.keys import Keys


def time_skipping_library_source(keys: Keys) -> str:
    """The library with `now_ms()` reading the clock offset of `keys`' namespace."""
    return library_source() + (
        "\n-- ===== time-skipping variant (engine/time_skipping.py) =====\n"
        "local real_now_ms = now_ms\n"
        "now_ms = function()\n"
        f"  local skipped = tonumber(redis.call('GET', '{keys.clock_offset()}')) or 0\n"
        "  return real_now_ms() + skipped\n"
        "end\n"
    )


async def load_time_skipping_library(redis: Redis, keys: Keys) -> None:
    await redis.function_load(time_skipping_library_source(keys), replace=True)


# ARGV[1] clock offset key, ARGV[2] skip no further than this server time (ms; "" for
# no limit), ARGV[3..] the timers zsets of every shard.
# Returns {skipped_ms, now_ms after the skip, busy (1/0), next due timer (ms) or -1}.
_SKIP = """
local t = redis.call('TIME')
local offset = tonumber(redis.call('GET', ARGV[1])) or 0
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
local next_due = -1
for i = 3, #ARGV do
  local first = redis.call('ZRANGE', ARGV[i], 0, 0, 'WITHSCORES')
  if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'COUNT', 1000, 'TYPE', 'stream')
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local g = {}
      for i = 1, #group, 2 do g[group[i]] = group[i + 1] end
      if tonumber(g['pending']) > 0 or
         #redis.call('XRANGE', key, '(' .. g['last-delivered-id'], '+', 'COUNT', 1) > 0 then
        return {0, now, 1, next_due}
      end
    end
  end
until cursor == '0'
local target = next_due
if ARGV[2] ~= '' and (target < 0 or tonumber(ARGV[2]) < target) then
  target = tonumber(ARGV[2])
end
if target <= now then
  return {0, now, 0, next_due}
end
redis.call('INCRBY', ARGV[1], target - now)
return {target - now, target, 0, next_due}
"""


@dataclass(frozen=True)
class Skip:
    #: How far the clock moved (0 when it did not).
    skipped_ms: int
    #: The skipped clock after the call.
    now_ms: int
    #: Something was in flight: the clock was left alone.
    busy: bool
    next_due_ms: int | None


async def skip(redis: Redis, keys: Keys, limit_ms: int | None = None) -> Skip:
    """Skip the clock to the earliest due timer (at most to `limit_ms`) when nothing is
    in flight."""
    timers = [keys.timers(s) for s in range(keys.shards)]
    reply: Any = await redis.eval(
        _SKIP, 0, keys.clock_offset(), "" if limit_ms is None else str(limit_ms), *timers
    )
    skipped, now, busy, next_due = (int(x) for x in reply)
    return Skip(skipped, now, bool(busy), next_due if next_due >= 0 else None)


async def now_ms(redis: Redis, keys: Keys) -> int:
    """The (skipped) server clock, as the Functions read it."""
    pipe = redis.pipeline(transaction=True)
    pipe.time()
    pipe.get(keys.clock_offset())
    (seconds, micros), offset = await pipe.execute()
    return int(seconds) * 1000 + int(micros) // 1000 + int(offset or 0)
