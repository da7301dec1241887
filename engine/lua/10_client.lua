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

-- rd_start: start a workflow run.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id, workflow_type, task_queue, input, history_version
--       [, request window ms: with KEYS[4], the run id is the start's request id]
-- Returns {'ok', run_id} or {'already_started', running_run_id}. A start retried with
-- a run id it already started answers 'ok' again, even once that run has closed.
redis.register_function('rd_start', function(keys, args)
  local c = ctx(keys, args)
  if keys[4] and request_seen(keys[4], c.run) then return {'ok', c.run} end
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  if info[1] == 'RUNNING' then return {'already_started', info[2]} end
  if info[1] then remove_from_indexes(c) end
  local ts = now_ms()
  new_run(c, c.run, args[4], args[5], args[6], args[7], ts)
  if keys[4] then request_done(keys[4], c.run, args[8], ts) end
  return {'ok', c.run}
end)

local function check_running(c)
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  if not info[1] or (c.run ~= '' and info[2] ~= c.run) then return {'not_found'} end
  if info[1] ~= 'RUNNING' then return {'not_running', info[1]} end
  return nil
end

-- rd_signal: deliver a signal.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id ('' = current run), signal_name, input
--       [, request_id, request window ms]
-- Returns {'ok'} | {'not_found'} | {'not_running', status} |
--         {'history_limit', message} (the history is full: refused).
-- A request id already applied answers {'ok'} and delivers nothing.
redis.register_function('rd_signal', function(keys, args)
  local c = ctx(keys, args)
  if keys[4] and request_seen(keys[4], args[6]) then return {'ok'} end
  local bad = check_running(c)
  if bad then return bad end
  local events, limit = history_size(c)
  if events + redis.call('LLEN', c.buf) >= limit then
    return {'history_limit', history_limit_message(events, limit)}
  end
  local ts = now_ms()
  deliver(c, 'WorkflowExecutionSignaled', ts, {'signal_name', args[4], 'input', args[5]})
  if keys[4] then request_done(keys[4], args[6], args[7], ts) end
  return {'ok'}
end)

-- rd_cancel: ask the workflow to cancel (its main coroutine is cancelled; an activity it
-- awaits raises ActivityError(cause=CancelledError)); its code may clean up.
-- KEYS: wf, history, buffer[, requests]
-- ARGV: prefix, workflow_id, run_id, reason[, request_id, request window ms]
-- Returns {'ok'} | {'not_found'} | {'not_running', status}.
redis.register_function('rd_cancel', function(keys, args)
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
