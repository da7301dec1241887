-- What a workflow task completion reads once and writes once (docs/benchmarks.md
-- "Fewer redis.calls per transition"): the workflow hash's fields it needs, in one HMGET
-- on entry (hot_read), and its event ids, taken from that read and written by its
-- closing HSET (ids_defer) instead of one HINCRBY per event (00_common.lua append).

local function ids_defer(c, next_event_id)
  c.next_eid, c.eid_dirty = tonumber(next_event_id), false
end

-- Writes the deferred counter (before anything that may read or reset it) and ends the
-- deferral: appends go back to HINCRBY.
local function ids_flush(c)
  if c.eid_dirty then redis.call('HSET', c.wf, 'next_event_id', c.next_eid) end
  c.next_eid, c.eid_dirty = nil, false
end

-- The workflow hash's fields a workflow task completion reads (one HMGET on entry:
-- wft_fenced, act_fenced, rd_signal), by name in c.h (false: unset). Read once, used for what the
-- transition does not change before it is used (the fence, the queue, the limit, which
-- of the fields the closing HDEL has to remove).
local HOT_FIELDS = {'run_id', 'status', 'wft_epoch', 'wft', 'wft_token', 'task_queue',
  'next_event_id', 'max_events', 'sticky', 'sticky_ms', 'last_wft_failure', 'wft_msg',
  'wft_task'}

-- HMGET of HOT_FIELDS and `extra` (names); fills c.h, returns the extras' values.
local function hot_read(c, extra)
  local names = {unpack(HOT_FIELDS)}
  for i = 1, #extra do names[#names + 1] = extra[i] end
  local values = redis.call('HMGET', c.wf, unpack(names))
  local h, n = {}, #HOT_FIELDS
  for i = 1, n do h[HOT_FIELDS[i]] = values[i] end
  c.h = h
  local out = {}
  for i = 1, #extra do out[i] = values[n + i] end
  return out
end
