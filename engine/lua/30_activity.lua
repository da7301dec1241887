-- Activity task transitions: start, heartbeat, complete/fail.

-- The activity's state while `attempt` is its current one ('' = whichever is: an async
-- activity handle made from workflow, run and activity ids), else nil.
-- One HMGET: the run, the activity's state and (hot_read) what a one-write step and
-- its workflow task completion read.
local function act_fenced(c, seq, attempt)
  local raw = hot_read(c, {'act:' .. seq})[1]
  if c.h.run_id ~= c.run or c.h.status ~= 'RUNNING' or not raw then return nil end
  local state = cjson.decode(raw)
  if attempt ~= '' and tostring(state.attempt) ~= attempt then return nil end
  return state
end

-- rd_act_start: mark a running attempt started and arm its timeouts. Workers call it
-- only for attempts that run longer than a moment (or have short timeouts): an attempt
-- that completes first never needs it, and a dead worker's task is claimed anyway.
-- With ARGV[8] 'async' the activity function returned through raise_complete_async():
-- the attempt is marked started if it was not, and its task acknowledged (a client
-- completes it by task token); it answers with no state, input or details.
-- KEYS: wf, history, buffer, activity task stream
-- ARGV: prefix, workflow_id, run_id, activity_id, attempt, msg_id, worker, ['async']
-- Returns {'ok', state_json, input, heartbeat_details, now_ms, due_in} or {'stale'};
-- due_in: ms until the earliest timeout it armed falls due (-1: none), so that the
-- worker's timer loop wakes only when that is before its next scan.
redis.register_function('rd_act_start', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local seq, attempt, msg = args[4], args[5], args[6]
  local async = args[8] == 'async'
  local state = act_fenced(c, seq, attempt)
  if not state then
    ack(c.task, msg)
    return {'stale'}
  end
  local ts = now_ms()
  timers_added_reset()
  if async and state.started then
    -- Marked before (it ran a while): its timeouts run already; only the task goes.
    ack(c.task, msg)
    state.msg = nil
    state.worker = nil
    put_activity(c, seq, state)
    return {'ok', '', '', '', ts, -1}
  end
  if state.cancel_requested then
    -- Cancelled before it started (WAIT_CANCELLATION_COMPLETED): it ends here.
    ack(c.task, msg)
    finish_activity(c, seq, state, 'ActivityTaskFailed', 'failure', cancelled_failure(), ts)
    return {'stale'}
  end
  state.started = ts
  if async then
    ack(c.task, msg)
  else
    state.msg = msg
    state.worker = args[7]
  end
  put_activity(c, seq, state)
  local stc = tonumber(state.start_to_close_ms)
  if stc and stc > 0 then
    add_timer(c.timers, ts + stc, timer_member('S', c.run, seq, attempt, c.id))
  end
  local hb = tonumber(state.heartbeat_ms)
  if hb and hb > 0 then
    add_timer(c.timers, ts + hb, timer_member('H', c.run, seq, attempt, c.id))
  end
  if async then return {'ok', '', '', '', ts, timers_added_in(ts)} end
  local data = redis.call('HMGET', c.wf, 'actin:' .. seq, 'acthb:' .. seq)
  return {'ok', cjson.encode(state), data[1] or '', data[2] or '', ts, timers_added_in(ts)}
end)

-- rd_act_heartbeat: the activity is alive; push its heartbeat deadline out.
-- KEYS: wf
-- ARGV: prefix, workflow_id, run_id, activity_id, attempt ('' = the current one),
--       details ('' = none)
-- Returns {'ok'}, {'cancel'} when the workflow asked to cancel the activity, or
-- {'stale'} when the attempt is not the activity's current one any more (it ended,
-- timed out, or its run closed): either way the attempt is no longer wanted.
redis.register_function('rd_act_heartbeat', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local seq, attempt = args[4], args[5]
  local state = act_fenced(c, seq, attempt)
  if not state then return {'stale'} end
  if state.cancel_requested then return {'cancel'} end
  local hb = tonumber(state.heartbeat_ms)
  if hb and hb > 0 then
    add_timer(c.timers, now_ms() + hb,
      timer_member('H', c.run, seq, tostring(state.attempt), c.id))
  end
  if args[6] ~= '' then redis.call('HSET', c.wf, 'acthb:' .. seq, args[6]) end
  return {'ok'}
end)

-- Eager workflow task: when the completing worker also polls the workflow's task queue
-- and this completion queued the run's next workflow task, the worker takes it in the
-- reply (a normal delivery to its consumer) instead of its poller being woken for it.
-- A task queued for the workflow's sticky owner (schedule_wft) is taken only by the
-- owner itself, from its own stream (`sticky`: the completing worker's sticky name).
local function take_queued_wft(c, consumer, task_queue, before, sticky)
  if before ~= 'none' then return nil end  -- a task was already due or running
  local info = redis.call('HMGET', c.wf, 'wft', 'task_queue', 'sticky')
  if info[1] ~= 'scheduled' or info[2] ~= task_queue then return nil end
  local stream = key_workflow_tasks(c.prefix, task_queue)
  if info[3] and info[3] ~= '' then
    if info[3] ~= sticky then return nil end  -- another worker's
    stream = key_sticky_tasks(c.prefix, task_queue, sticky)
  end
  local entry = first_entry(redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', 1,
    'STREAMS', stream, '>'))
  if entry then return {stream, entry[1], entry[2]} end
  return nil
end

-- A failed attempt: what its ActivityTaskFailed records (the worker stopped it at the
-- workflow's request: a cancellation) and the delay before the next attempt (nil: the
-- failure is final).
local function failure_outcome(state, payload, err_type, non_retryable, ts)
  if state.cancel_requested and err_type == 'CancelledError' then
    payload = cancelled_failure()
  end
  return payload, retry_delay(state, err_type, non_retryable, ts)
end

-- rd_act_complete: an attempt finished. Success delivers the result; a failure is
-- retried after a durable backoff timer, or delivered when final.
-- KEYS: wf, history, buffer, activity task stream (absent, msg_id '': a client's
--       completion of an async activity, attempt '' for the current one)
-- ARGV: prefix, workflow_id, run_id, activity_id, attempt, msg_id,
--       outcome ('completed'|'failed'), payload (result bytes | failure json),
--       error_type, non_retryable ('1'|'0'),
--       [eager consumer, its workflow task queue, its sticky name or ''] (optional:
--       see take_queued_wft)
-- Returns {'ok', 'completed'|'retrying'|'failed', {stream, entry_id, fields} (the eager
-- workflow task, {} none), ms until the earliest timer the call added falls due (-1:
-- none added: a retry adds one)} or {'stale'}.
redis.register_function('rd_act_complete', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local seq, attempt, msg = args[4], args[5], args[6]
  -- A failure's JSON, decoded before anything is written (cjson.decode raises on text
  -- that is not JSON: an error reply).
  local failure = nil
  if args[7] ~= 'completed' then failure = cjson.decode(args[8]) end
  local state = act_fenced(c, seq, attempt)
  ack(c.task, msg)
  if not state then return {'stale'} end
  local ts = now_ms()
  c.ts = ts
  timers_added_reset()
  local consumer = args[11]
  local before = nil
  if consumer and consumer ~= '' then before = c.h.wft end  -- act_fenced's read
  c.wft_now = c.h.wft  -- for deliver (finish_activity): unchanged since
  local outcome
  if args[7] == 'completed' then
    finish_activity(c, seq, state, 'ActivityTaskCompleted', 'result', args[8], ts)
    outcome = 'completed'
  else
    clear_attempt_timers(c, seq, state.attempt)
    local payload, delay = failure_outcome(state, args[8], args[9], args[10] == '1', ts)
    if delay then
      retry_activity(c, seq, state, failure, delay, ts)  -- (payload is args[8]: no cancel)
      if not c.task then wake_for_timers(c.prefix, ts) end  -- a client's: see there
      return {'ok', 'retrying', {}, timers_added_in(ts)}
    end
    finish_activity(c, seq, state, 'ActivityTaskFailed', 'failure', payload, ts)
    outcome = 'failed'
  end
  if not c.task then wake_for_timers(c.prefix, ts) end
  if before then
    local eager = take_queued_wft(c, consumer, args[12], before, args[13] or '')
    if eager then return {'ok', outcome, eager, timers_added_in(ts)} end
  end
  return {'ok', outcome, {}, timers_added_in(ts)}
end)

-- The ts of the history's last event (0: none).
local function last_event_ts(c)
  local last = redis.call('XREVRANGE', c.hist, '+', '-', 'COUNT', 1)[1]
  if not last then return 0 end
  local fields = last[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'ts' then return tonumber(fields[i + 1]) or 0 end
  end
  return 0
end

-- How far behind the server's now a one-write step's code time may be (ms).
local ONE_WRITE_MAX_LAG_MS = 1000

-- Why a one-write step's workflow task part may not land (nil: it may): the step
-- stands for the workflow task this completion would queue, so it lands only where
-- that task would come straight to this worker and run on exactly what the code saw.
local function one_write_refused(c, args, before_ts, ts)
  local h = c.h  -- act_fenced's read: nothing changed them since
  local info = {h.wft, h.task_queue, h.sticky, h.next_event_id}
  -- No task due or running (the completion would queue one), for our queue, owned by us
  -- (our sticky stream still there: schedule_wft would route the task to it).
  if info[1] ~= 'none' or info[2] ~= args[9] or info[3] ~= args[10] or args[10] == '' or
      redis.call('EXISTS', key_sticky_tasks(c.prefix, args[9], args[10])) == 0 then
    return 'owner'
  end
  -- The completion gets the event id the code gave it, and no event follows it.
  if tonumber(info[4]) + 1 ~= tonumber(args[13]) or redis.call('LLEN', c.buf) > 0 then
    return 'moved'
  end
  -- The code's time: on the server's clock (the worker's estimate of it), never before
  -- what the history already shows, never ahead of the server, nor far behind it (an
  -- estimate that missed a jump of the clock: a time-skipping test server's).
  local code_now = tonumber(args[11]) or 0
  if code_now < before_ts or code_now > ts or code_now < ts - ONE_WRITE_MAX_LAG_MS then
    return 'clock'
  end
  return nil
end

-- rd_act_complete_wft / rd_act_fail_wft: an activity step in one write
-- (docs/design-notes.md "One-write activity steps"). The worker that ran the attempt
-- owns the workflow's run, cached at the history's end: it ran the workflow code on the
-- ActivityTaskCompleted (or, for a failure it found final, the ActivityTaskFailed) it
-- built itself, and sends the attempt's end with the speculative completion of the
-- workflow task that activation stands for. When one_write_refused finds nothing
-- against it, the event is appended and the workflow task's completion written at
-- once (no task is queued: none is needed). Else this is rd_act_complete (eager
-- consumer set): the event queues the task, handed over if it can be, for the worker to
-- start the normal way. A failure lands only as the one the code saw: final here too
-- (else it is retried as rd_act_complete retries it: refused 'retry') and recorded as
-- the worker sent it (else refused 'cancel': the server's cancellation replaces it).
-- KEYS: wf, history, buffer, activity task stream
-- ARGV: prefix, workflow_id, run_id, activity_id, attempt, msg_id, result (failure json
--       for rd_act_fail_wft: its `type` and `non_retryable` are rd_act_complete's
--       error_type and non_retryable), consumer (the worker), its workflow task queue,
--       its sticky name, now_ms, flags, seen_next_event_id, eager_slots,
--       signals_dropped, sticky_ms,
--       then per command: kind, n_fields, field, value... (as rd_wft_complete)
-- Returns {'ok', 'completed'|'failed'|'retrying', eager workflow task ({} none), due_in
--          of the attempt's end, the workflow task completion's reply (rd_wft_complete's
--          'ok' one) or why it was refused ('owner', 'moved', 'clock', 'retry',
--          'cancel': see above and one_write_refused), the server's now_ms} or {'stale'}.
local function act_step_wft(keys, args, failed)
  local c = ctx(keys, args)
  local seq, attempt, msg = args[4], args[5], args[6]
  -- Validate the command list before writing anything.
  local cmds = parse_commands(args, 17)
  if not cmds then return redis.error_reply('ERR malformed command list') end
  local failure = nil
  if failed then
    failure = cjson.decode(args[7])
    if type(failure) ~= 'table' then return redis.error_reply('ERR malformed failure') end
  end
  local state = act_fenced(c, seq, attempt)
  ack(c.task, msg)
  if not state then return {'stale'} end
  local ts = now_ms()
  local refused = one_write_refused(c, args, last_event_ts(c), ts)
  timers_added_reset()
  local etype, field, payload, outcome = 'ActivityTaskCompleted', 'result', args[7], 'completed'
  if failed then
    etype, field, outcome = 'ActivityTaskFailed', 'failure', 'failed'
    local err_type = type(failure.type) == 'string' and failure.type or ''
    clear_attempt_timers(c, seq, state.attempt)
    local delay
    payload, delay = failure_outcome(state, args[7], err_type, failure.non_retryable == true, ts)
    if delay then
      retry_activity(c, seq, state, failure, delay, ts)
      return {'ok', 'retrying', {}, timers_added_in(ts), refused or 'retry', ts}
    end
    if not refused and payload ~= args[7] then refused = 'cancel' end
  end
  if refused then
    local before = c.h.wft
    finish_activity(c, seq, state, etype, field, payload, ts)
    local due_in = timers_added_in(ts)
    local eager = take_queued_wft(c, args[8], args[9], before, args[10]) or {}
    return {'ok', outcome, eager, due_in, refused, ts}
  end
  ids_defer(c, c.h.next_event_id)
  finish_activity(c, seq, state, etype, field, payload, ts, true)
  local due_in = timers_added_in(ts)
  local w = {args[1], args[2], args[3], '', '', '', args[8], args[11], args[12], args[13],
    args[14], args[15], args[10], args[16]}
  local wc = ctx({keys[1], keys[2], keys[3]}, args)  -- no task entry to acknowledge
  -- What this call read and wrote so far: the hash's fields, the time, the empty buffer
  -- (one_write_refused), the deferred event ids.
  wc.h, wc.ts, wc.buffered = c.h, ts, 0
  wc.next_eid, wc.eid_dirty = c.next_eid, c.eid_dirty
  return {'ok', outcome, {}, due_in, wft_commit(wc, w, cmds), ts}
end

redis.register_function('rd_act_complete_wft', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  return act_step_wft(keys, args, false)
end)

redis.register_function('rd_act_fail_wft', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  return act_step_wft(keys, args, true)
end)
