-- Schedules (docs/schedules.md, docs/design-notes.md "Schedules"). A schedule's whole
-- state is one hash in the shard of its id; the shard's schedules zset holds its id
-- scored by when a worker should next look at it. Every function here touches those two
-- keys only (one hash slot): the workflow a fire starts, in whatever shard, is started by
-- the worker with an ordinary idempotent rd_start between two of these calls.
--
-- Common KEYS: [1] schedule hash   [2] the shard's schedules zset
-- Common ARGV: [1] schedule id
-- Hash fields: spec, policy, action (JSON), args, memo (payloads), paused, note,
--   next_ms / due_ms (next nominal fire time / with jitter, '' none), seq (bumped by
--   every change: the fence of rd_sched_advance), version (bumped by create/update: the
--   fence of rd_sched_update), pending (JSON {fire, wf, lease}: a start recorded but not
--   yet confirmed), buffer, manual, running, recent (JSON lists), actions / skipped /
--   missed (counters), created_ms, updated_ms.

-- How long a pending start is its writer's to finish: after this, any worker redoes it.
local SCHEDULE_LEASE_MS = 5000
-- While fires wait in the buffer, look again this often: the close of the running
-- workflow is learnt by reading its state, not announced.
local SCHEDULE_RECHECK_MS = 1000
local MAX_RECENT = 10
local MAX_RUNNING = 100

-- When a worker should look at the schedule next.
local function schedule_score(h, ts)
  local f = redis.call('HMGET', h, 'pending', 'paused', 'due_ms', 'manual', 'buffer')
  if f[1] and f[1] ~= '' then return cjson.decode(f[1]).lease end
  local score = '+inf'
  local best = nil
  if f[2] ~= '1' and f[3] and f[3] ~= '' then best = tonumber(f[3]) end
  if f[4] and f[4] ~= '[]' and f[4] ~= '' then best = ts end
  if f[5] and f[5] ~= '[]' and f[5] ~= '' then
    if not best or best > ts + SCHEDULE_RECHECK_MS then best = ts + SCHEDULE_RECHECK_MS end
  end
  if best then score = best end
  return score
end

local function rescore(keys, id, ts)
  redis.call('ZADD', keys[2], schedule_score(keys[1], ts), id)
end

-- rd_sched_create: ARGV: id, field/value pairs... Returns {'ok'} | {'exists'}.
redis.register_function('rd_sched_create', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if redis.call('EXISTS', keys[1]) == 1 then return {'exists'} end
  local ts = now_ms()
  local fields = {'HSET', keys[1]}
  for i = 2, #args do fields[#fields + 1] = args[i] end
  redis.call(unpack(fields))
  redis.call('HSET', keys[1], 'seq', 1, 'version', 1, 'created_ms', ts, 'updated_ms', ts,
    'buffer', '[]', 'manual', '[]', 'running', '[]', 'recent', '[]',
    'actions', 0, 'skipped', 0, 'missed', 0)
  rescore(keys, args[1], ts)
  return {'ok'}
end)

-- rd_sched_update: replace what the user gave (spec, policy, action, state).
-- ARGV: id, expected version, field/value pairs...
-- Returns {'ok'} | {'not_found'} | {'conflict'} (updated by someone else meanwhile).
redis.register_function('rd_sched_update', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local version = redis.call('HGET', keys[1], 'version')
  if not version then return {'not_found'} end
  if version ~= args[2] then return {'conflict'} end
  local ts = now_ms()
  local fields = {'HSET', keys[1]}
  for i = 3, #args do fields[#fields + 1] = args[i] end
  redis.call(unpack(fields))
  redis.call('HINCRBY', keys[1], 'version', 1)
  redis.call('HINCRBY', keys[1], 'seq', 1)
  redis.call('HSET', keys[1], 'updated_ms', ts)
  rescore(keys, args[1], ts)
  return {'ok'}
end)

-- rd_sched_advance: a worker's step (engine/schedule_policy.py): write the fields it
-- computed, bump counters, and record the start it decided on as pending.
-- ARGV: id, expected seq, fields JSON {name: text}, counters JSON {name: n},
--       pending JSON {fire, wf} or ''.
-- Returns {'ok', lease_ms} | {'not_found'} | {'stale'} (the state changed since the
-- worker read it: nothing written) | {'pending'} (a start awaits confirmation first).
redis.register_function('rd_sched_advance', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local f = redis.call('HMGET', keys[1], 'seq', 'pending')
  if not f[1] then return {'not_found'} end
  if f[1] ~= args[2] then return {'stale'} end
  if f[2] and f[2] ~= '' then return {'pending'} end
  local ts = now_ms()
  for name, value in pairs(cjson.decode(args[3])) do
    redis.call('HSET', keys[1], name, value)
  end
  for name, n in pairs(cjson.decode(args[4])) do
    redis.call('HINCRBY', keys[1], name, n)
  end
  local lease = 0
  if args[5] ~= '' then
    local pending = cjson.decode(args[5])
    lease = ts + SCHEDULE_LEASE_MS
    pending.lease = lease
    redis.call('HSET', keys[1], 'pending', cjson.encode(pending))
  end
  redis.call('HINCRBY', keys[1], 'seq', 1)
  rescore(keys, args[1], ts)
  return {'ok', lease}
end)

-- rd_sched_started: the pending start happened (the workflow runs, or had already
-- been started by an earlier attempt): record it once.
-- ARGV: id, fire ms, workflow id, run id.
-- Returns {'ok'} | {'not_found'} | {'not_pending'} (someone recorded it already).
redis.register_function('rd_sched_started', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local f = redis.call('HMGET', keys[1], 'pending', 'running', 'recent')
  if not f[2] then return {'not_found'} end
  if not f[1] or f[1] == '' then return {'not_pending'} end
  local pending = cjson.decode(f[1])
  if pending.fire ~= tonumber(args[2]) or pending.wf ~= args[3] then return {'not_pending'} end
  local ts = now_ms()
  local running = cjson.decode(f[2])
  running[#running + 1] = {args[3], args[4]}
  while #running > MAX_RUNNING do table.remove(running, 1) end
  local recent = cjson.decode(f[3])
  recent[#recent + 1] = {f = tonumber(args[2]), a = ts, w = args[3], r = args[4]}
  while #recent > MAX_RECENT do table.remove(recent, 1) end
  redis.call('HDEL', keys[1], 'pending')
  redis.call('HSET', keys[1], 'running', cjson.encode(running), 'recent', cjson.encode(recent))
  redis.call('HINCRBY', keys[1], 'actions', 1)
  redis.call('HINCRBY', keys[1], 'seq', 1)
  rescore(keys, args[1], ts)
  return {'ok'}
end)

-- rd_sched_control: a client's pause / unpause / trigger / backfill.
-- ARGV: id, kind ('pause' | 'unpause' | 'manual'), note or the manual item JSON
--       [, unpause: next_ms, due_ms].
-- A manual item ({"t": 0} a trigger, fired at now, {"s": after ms, "e": until ms} a backfill,
-- each with "o": an overlap policy or absent) is queued for the next worker.
-- Returns {'ok'} | {'not_found'}.
redis.register_function('rd_sched_control', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if redis.call('EXISTS', keys[1]) == 0 then return {'not_found'} end
  local ts = now_ms()
  if args[2] == 'pause' or args[2] == 'unpause' then
    redis.call('HSET', keys[1], 'paused', args[2] == 'pause' and '1' or '0', 'note', args[3])
    -- Unpause: go on from the first fire after now (those due while paused are dropped).
    if args[2] == 'unpause' and args[4] then
      redis.call('HSET', keys[1], 'next_ms', args[4], 'due_ms', args[5])
    end
  else
    local manual = cjson.decode(redis.call('HGET', keys[1], 'manual') or '[]')
    local item = cjson.decode(args[3])
    if item.t == 0 then item.t = ts end  -- a trigger fires at the server's now
    manual[#manual + 1] = item
    redis.call('HSET', keys[1], 'manual', cjson.encode(manual))
  end
  redis.call('HINCRBY', keys[1], 'seq', 1)
  redis.call('HSET', keys[1], 'updated_ms', ts)
  rescore(keys, args[1], ts)
  return {'ok'}
end)

-- rd_sched_delete: ARGV: id. Returns {'ok'} | {'not_found'}. Workflows it started run on.
redis.register_function('rd_sched_delete', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if redis.call('EXISTS', keys[1]) == 0 then return {'not_found'} end
  redis.call('DEL', keys[1])
  redis.call('ZREM', keys[2], args[1])
  return {'ok'}
end)

-- rd_sched_due: the schedules of one shard a worker should look at now.
-- KEYS: [1] the shard's schedules zset. ARGV: limit.
-- Returns {now_ms (server clock), next score or -1, id...}.
redis.register_function{function_name = 'rd_sched_due', flags = {'no-writes'},
  callback = function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
    local ts = now_ms()
    local out = {ts, -1}
    local due = redis.call('ZRANGEBYSCORE', keys[1], '-inf', ts, 'LIMIT', 0, tonumber(args[1]))
    for i = 1, #due do out[#out + 1] = due[i] end
    local nxt = redis.call('ZRANGEBYSCORE', keys[1], '(' .. ts, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if nxt[2] and nxt[2] ~= 'inf' then out[2] = tonumber(nxt[2]) end
    return out
  end}
