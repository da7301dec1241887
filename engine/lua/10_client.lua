-- Client transitions: start, signal, cancel request, terminate.

-- Request ids of client calls (KEYS: the shard's requests zset; ARGV: the id, the
-- window in ms). A call whose reply was lost is retried with the same id: the retry
-- finds it and answers as the first call did, without applying anything again.
local function request_seen(key, id)
  return id ~= nil and id ~= '' and redis.call('ZSCORE', key, id) ~= false
end

local function request_done(key, id, window_ms, ts)
  if id == nil or id == '' then return end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ts - tonumber(window_ms))
  redis.call('ZADD', key, ts, id)
end

-- End the running run, as rd_terminate does (a start that replaces it).
local function terminate_run(c, reason, ts)
  flush_buffer(c)
  append(c, 'WorkflowExecutionTerminated', ts, {'reason', reason})
  redis.call('HSET', c.wf, 'failure', cjson.encode({message = reason, kind = 'terminated',
    type = 'TerminatedError', non_retryable = true}))
  close_run(c, 'TERMINATED', ts)
end

-- Statuses ALLOW_DUPLICATE_FAILED_ONLY starts again after.
local FAILED_STATUSES = {FAILED = true, CANCELED = true, TERMINATED = true, TIMED_OUT = true}

-- rd_start: start a workflow run, or signal-with-start.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id, workflow_type, task_queue, input, history_version
--       [, request window ms: with KEYS[4], the run id is the start's request id]
--       [, options JSON, memo payload, start signal input]
--       [, search attributes (wire JSON, engine/search_attributes.py; '' none)]
-- Options (all optional, temporalio's names): reuse (id_reuse_policy: ALLOW_DUPLICATE,
-- ALLOW_DUPLICATE_FAILED_ONLY, REJECT_DUPLICATE, TERMINATE_IF_RUNNING), conflict
-- (id_conflict_policy: FAIL, USE_EXISTING, TERMINATE_EXISTING), exec_ms / run_ms /
-- task_ms (timeouts), signal (signal-with-start: its name; the input is ARGV[11]),
-- header (the start's headers as JSON text, recorded on WorkflowExecutionStarted).
-- retention_ms, cron, backoff_ms (run chains: 15_run_chain.lua, new_run).
-- Returns {'ok', run_id} (the started run, or the running one USE_EXISTING kept),
-- {'already_started', run_id}, {'history_limit', message} (signal to a full history)
-- or {'bad_search_attributes', message}.
-- A start retried with a run id it already started answers 'ok' again, even once that
-- run has closed; one that was answered with the running run answers that run again
-- (unless another start came in between: then its own run id).
redis.register_function('rd_start', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local o = {}
  if args[9] and args[9] ~= '' then o = cjson.decode(args[9]) end
  local sa_error, sa = sa_check(args[12])
  if sa_error then return {'bad_search_attributes', sa_error} end
  if keys[4] and request_seen(keys[4], c.run) then
    local seen = redis.call('HMGET', c.wf, 'start_request', 'start_answer')
    if seen[1] == c.run and seen[2] then return {'ok', seen[2]} end
    return {'ok', c.run}
  end
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  local ts = now_ms()
  if info[1] == 'RUNNING' then
    local conflict = o.conflict or 'FAIL'
    if o.reuse == 'TERMINATE_IF_RUNNING' then conflict = 'TERMINATE_EXISTING' end
    if conflict == 'USE_EXISTING' then
      if o.signal then
        local events, limit = history_size(c)
        if events + redis.call('LLEN', c.buf) >= limit then
          return {'history_limit', history_limit_message(events, limit)}
        end
        deliver(c, 'WorkflowExecutionSignaled', ts, {'signal_name', o.signal, 'input', args[11]})
      end
      redis.call('HSET', c.wf, 'start_request', c.run, 'start_answer', info[2])
      if keys[4] then request_done(keys[4], c.run, args[8], ts) end
      return {'ok', info[2]}
    elseif conflict == 'TERMINATE_EXISTING' then
      terminate_run(c, 'terminated by a start of the same workflow id (TERMINATE_EXISTING)', ts)
    else
      return {'already_started', info[2]}
    end
  elseif info[1] then
    local reuse = o.reuse or 'ALLOW_DUPLICATE'
    if reuse == 'REJECT_DUPLICATE' or
        (reuse == 'ALLOW_DUPLICATE_FAILED_ONLY' and not FAILED_STATUSES[info[1]]) then
      return {'already_started', info[2]}
    end
  end
  if info[1] then
    sa_clear(c)
    remove_from_indexes(c)
  end
  -- (After terminate_run: the 'N' timer a cron run's close adds is a no-op when the
  -- run was terminated, and no worker need wake for it.)
  timers_added_reset()
  new_run(c, c.run, args[4], args[5], args[6], args[7], ts, {memo = args[10],
    exec_ms = o.exec_ms, run_ms = o.run_ms, task_ms = o.task_ms, search_attributes = sa,
    header = o.header, retention_ms = o.retention_ms, cron = o.cron, backoff_ms = o.backoff_ms})
  sa_apply(c, sa)
  if o.signal then
    deliver(c, 'WorkflowExecutionSignaled', ts, {'signal_name', o.signal, 'input', args[11]})
  end
  if keys[4] then request_done(keys[4], c.run, args[8], ts) end
  wake_for_timers(c.prefix, ts)  -- a run timeout, a first task's backoff
  return {'ok', c.run}
end)

local function check_running(c)
  local info
  if c.h then info = {c.h.status, c.h.run_id}  -- hot_read on entry
  else info = redis.call('HMGET', c.wf, 'status', 'run_id') end
  if not info[1] or (c.run ~= '' and info[2] ~= c.run) then return {'not_found'} end
  if info[1] ~= 'RUNNING' then return {'not_running', info[1]} end
  return nil
end

-- rd_signal: deliver a signal.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id ('' = current run), signal_name, input
--       [, request_id, request window ms[, header JSON text]]
-- Returns {'ok'} | {'not_found'} | {'not_running', status} |
--         {'history_limit', message} (the history is full: refused).
-- A request id already applied answers {'ok'} and delivers nothing.
redis.register_function('rd_signal', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  if keys[4] and request_seen(keys[4], args[6]) then return {'ok'} end
  hot_read(c, {})  -- one HMGET for the check, the limit and deliver's state
  c.wft_now = c.h.wft
  local bad = check_running(c)
  if bad then return bad end
  local events, limit = history_size(c)
  if events + redis.call('LLEN', c.buf) >= limit then
    return {'history_limit', history_limit_message(events, limit)}
  end
  local ts = now_ms()
  c.ts = ts  -- schedule_wft's sticky deadline: one TIME per call
  local fields = {'signal_name', args[4], 'input', args[5]}
  if args[8] and args[8] ~= '' then
    fields[#fields + 1] = 'header'
    fields[#fields + 1] = args[8]
  end
  deliver(c, 'WorkflowExecutionSignaled', ts, fields)
  if keys[4] then request_done(keys[4], args[6], args[7], ts) end
  return {'ok'}
end)

-- rd_cancel: ask the workflow to cancel (its main coroutine is cancelled; an activity it
-- awaits raises ActivityError(cause=CancelledError)); its code may clean up.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id, reason[, request_id, request window ms]
-- Returns {'ok'} | {'not_found'} | {'not_running', status}.
redis.register_function('rd_cancel', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  if keys[4] and request_seen(keys[4], args[5]) then return {'ok'} end
  local bad = check_running(c)
  if bad then return bad end
  local ts = now_ms()
  if redis.call('HSETNX', c.wf, 'cancel_requested', 1) == 1 then
    deliver(c, 'WorkflowExecutionCancelRequested', ts, {'reason', args[4]})
  end
  if keys[4] then request_done(keys[4], args[5], args[6], ts) end
  return {'ok'}
end)

-- rd_terminate: end the run at once; its code gets no chance to react.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id, reason[, request_id, request window ms]
-- Returns {'ok'} | {'not_found'} | {'not_running', status}.
redis.register_function('rd_terminate', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  if keys[4] and request_seen(keys[4], args[5]) then return {'ok'} end
  local bad = check_running(c)
  if bad then return bad end
  local ts = now_ms()
  flush_buffer(c)
  append(c, 'WorkflowExecutionTerminated', ts, {'reason', args[4]})
  redis.call('HSET', c.wf, 'failure', cjson.encode({message = args[4], kind = 'terminated',
    type = 'TerminatedError', non_retryable = true}))
  close_run(c, 'TERMINATED', ts)
  if keys[4] then request_done(keys[4], args[5], args[6], ts) end
  return {'ok'}
end)
