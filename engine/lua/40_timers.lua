-- Durable timers: user timers, activity retries and timeouts, workflow task timeouts
-- and retries, run and execution timeouts ('X'). Members read
-- "KIND|run_id|a|b|workflow_id" (the id last: it may hold '|').

local function split_member(member)
  local parts, pos = {}, 1
  for _ = 1, 4 do
    local bar = string.find(member, '|', pos, true)
    if not bar then return nil end
    parts[#parts + 1] = string.sub(member, pos, bar - 1)
    pos = bar + 1
  end
  parts[5] = string.sub(member, pos)
  return parts
end

local function fire(prefix, member, ts)
  local p = split_member(member)
  if not p then return end
  local kind, run, a, b = p[1], p[2], p[3], p[4]
  local c = ctx_of(prefix, p[5])
  c.run = run
  if kind == 'N' then return cron_due(c, member, ts) end  -- after the run closed
  if not is_current(c, run) then return end
  if kind == 'T' then
    if redis.call('HGET', c.wf, 'timer:' .. a) == member then
      redis.call('HDEL', c.wf, 'timer:' .. a)
      deliver(c, 'TimerFired', ts, {'timer_id', a})
    end
  elseif kind == 'R' then
    local state = get_activity(c, a)
    if state and tostring(state.attempt) == b then
      state.next_attempt_at = nil
      put_activity(c, a, state)
      enqueue_activity(c, a, b, state)
    end
  elseif kind == 'S' or kind == 'H' then
    local state = get_activity(c, a)
    if state and tostring(state.attempt) == b and state.started then
      activity_timed_out(c, a, state, kind == 'S' and 'start_to_close' or 'heartbeat', ts)
    end
  elseif kind == 'Q' then
    local state = get_activity(c, a)
    if state and tostring(state.attempt) == b and not state.started then
      activity_timed_out(c, a, state, 'schedule_to_start', ts)
    end
  elseif kind == 'C' then
    local state = get_activity(c, a)
    if state then activity_timed_out(c, a, state, 'schedule_to_close', ts) end
  elseif kind == 'W' then
    local info = redis.call('HMGET', c.wf, 'wft', 'wft_epoch', 'wft_token', 'wft_msg',
      'task_queue', 'wft_task')
    if info[1] == 'started' and info[2] == a and info[3] == b then
      ack(info[6] or key_workflow_tasks(c.prefix, info[5]), info[4])
      local failure = cjson.encode({message = 'workflow task timed out', kind = 'timeout',
        type = 'WorkflowTaskTimeout', time = ts})
      wft_retry_later(c, a, failure, ts)
    end
  elseif kind == 'K' then
    -- The owner did not start its sticky task in time (hung, overloaded, or gone
    -- without its death being seen): hand it to every worker. Its copy on the owner's
    -- stream stays; whichever copy starts first wins (epoch and token fence the other).
    local info = redis.call('HMGET', c.wf, 'wft', 'wft_epoch', 'task_queue')
    if info[1] == 'scheduled' and info[2] == a then
      redis.call('HDEL', c.wf, 'sticky', 'sticky_ms')
      redis.call('XADD', key_workflow_tasks(c.prefix, info[3]), '*',
        'workflow_id', c.id, 'run_id', run, 'epoch', a)
    end
  elseif kind == 'X' then
    -- The run's run_timeout or the chain's execution_timeout ('run' / 'execution'):
    -- the run ends at once, as a terminate does, with status TIMED_OUT.
    flush_buffer(c)
    append(c, 'WorkflowExecutionTimedOut', ts, {'timeout_type', a})
    redis.call('HSET', c.wf, 'failure', cjson.encode({
      message = 'workflow timed out (' .. a .. '_timeout)', kind = 'workflow_timeout',
      type = 'TimeoutError', timeout_type = a, non_retryable = true}))
    close_run(c, 'TIMED_OUT', ts)
  elseif kind == 'B' then
    local info = redis.call('HMGET', c.wf, 'wft', 'wft_epoch')
    if info[1] == 'backoff' and info[2] == a then schedule_wft(c) end
  end
end

-- rd_fire_timers: fire every timer of one shard that is due on the server's clock.
-- KEYS: timers zset of the shard[, its sticky deadlines zset[, its timer lease]]
-- ARGV: prefix, limit[, holder, lease ms, dead worker...]
-- Returns {fired_count, next_due_ms or -1, ms from now to next_due or -1}: the last
-- one on the server's clock, so a worker whose own clock is off still sleeps until the
-- next timer is due (sdk/worker/timers.py), then the cron runs due to be followed
-- ({workflow id, run id, cron schedule, close ms}..., for rd_cron_next). Sticky
-- deadlines fire in the same scan but do not count for the next due time: the loop
-- scans at least once a second, and under load far more often, which is soon enough
-- for a fallback.
-- With the lease key (sdk/worker/timer_leases.py): the scan runs only for the lease's
-- holder, or when nobody (or one of the dead workers named) holds it; it then takes
-- or renews the lease for `lease ms` and answers 1 as a 5th element. Held by another:
-- nothing is scanned, and the answer is {0, -1, -1, {}, 0, the lease's ms left}.
redis.register_function('rd_fire_timers', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if keys[3] then
    local held = redis.call('GET', keys[3])
    if held and held ~= args[3] then
      local dead = false
      for i = 5, #args do if held == args[i] then dead = true end end
      if not dead then return {0, -1, -1, {}, 0, redis.call('PTTL', keys[3])} end
    end
    redis.call('SET', keys[3], args[3], 'PX', args[4])
  end
  local ts = now_ms()
  local limit = tonumber(args[2])
  local fired = 0
  local crons = {}
  for k = math.min(#keys, 2), 1, -1 do
    local due = redis.call('ZRANGEBYSCORE', keys[k], '-inf', ts, 'LIMIT', 0, limit)
    for i = 1, #due do
      redis.call('ZREM', keys[k], due[i])
      local cron = fire(args[1], due[i], ts)
      if cron then crons[#crons + 1] = cron end
    end
    fired = fired + #due
  end
  local next_due = redis.call('ZRANGE', keys[1], 0, 0, 'WITHSCORES')
  local next_ms, next_in = -1, -1
  if next_due[2] then
    next_ms = tonumber(next_due[2])
    next_in = math.max(0, next_ms - ts)
  end
  if keys[3] then return {fired, next_ms, next_in, crons, 1} end
  return {fired, next_ms, next_in, crons}
end)

-- rd_timer_lease_release: give a shard's timer lease up (a worker that stops), so
-- another worker takes the shard's scans at its next look, not after the lease lapses.
-- KEYS: the shard's timer lease
-- ARGV: holder
-- Returns 1 when released, 0 when someone else held it (or nobody).
redis.register_function('rd_timer_lease_release', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if redis.call('GET', keys[1]) == args[1] then
    redis.call('DEL', keys[1])
    return 1
  end
  return 0
end)

-- rd_timer_wake_ack: a worker's poller read these wake entries and asked its timer loop
-- for a scan at their due times (sdk/worker/timer_wakes.py): acknowledge and delete
-- them. Entries pending longer than `stale ms` on any consumer (one that died or
-- stopped between its read and this call) go too, a few per call: nobody else takes
-- them, and their timers have fired by a scan of the lease's holder since.
-- KEYS: the shard's wake stream
-- ARGV: consumer, stale ms, entry id...
-- Returns how many entries were acknowledged.
redis.register_function('rd_timer_wake_ack', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local ids = {}
  for i = 3, #args do ids[#ids + 1] = args[i] end
  local stale = redis.call('XAUTOCLAIM', keys[1], GROUP, args[1], args[2], '0-0',
    'COUNT', 10, 'JUSTID')
  for _, id in ipairs(stale[2]) do ids[#ids + 1] = id end
  if #ids == 0 then return 0 end
  local acked = redis.call('XACK', keys[1], GROUP, unpack(ids))
  redis.call('XDEL', keys[1], unpack(ids))
  return acked
end)
