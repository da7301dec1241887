-- Client transitions: start, signal, cancel request, terminate.

-- rd_start: start a workflow run.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id, workflow_type, task_queue, input, history_version
-- Returns {'ok', run_id} or {'already_started', running_run_id}.
redis.register_function('rd_start', function(keys, args)
  local c = ctx(keys, args)
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  if info[1] == 'RUNNING' then return {'already_started', info[2]} end
  if info[1] then remove_from_indexes(c) end
  new_run(c, c.run, args[4], args[5], args[6], args[7], now_ms())
  return {'ok', c.run}
end)

local function check_running(c)
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  if not info[1] or (c.run ~= '' and info[2] ~= c.run) then return {'not_found'} end
  if info[1] ~= 'RUNNING' then return {'not_running', info[1]} end
  return nil
end

-- rd_signal: deliver a signal.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id ('' = current run), signal_name, input
-- Returns {'ok'} | {'not_found'} | {'not_running', status} |
--         {'history_limit', message} (the history is full: refused).
redis.register_function('rd_signal', function(keys, args)
  local c = ctx(keys, args)
  local bad = check_running(c)
  if bad then return bad end
  local events, limit = history_size(c)
  if events + redis.call('LLEN', c.buf) >= limit then
    return {'history_limit', history_limit_message(events, limit)}
  end
  deliver(c, 'WorkflowExecutionSignaled', now_ms(), {'signal_name', args[4], 'input', args[5]})
  return {'ok'}
end)

-- rd_cancel: ask the workflow to cancel (its main coroutine is cancelled; an activity it
-- awaits raises ActivityError(cause=CancelledError)); its code may clean up.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id, reason
-- Returns {'ok'} | {'not_found'} | {'not_running', status}.
redis.register_function('rd_cancel', function(keys, args)
  local c = ctx(keys, args)
  local bad = check_running(c)
  if bad then return bad end
  if redis.call('HSETNX', c.wf, 'cancel_requested', 1) == 1 then
    deliver(c, 'WorkflowExecutionCancelRequested', now_ms(), {'reason', args[4]})
  end
  return {'ok'}
end)

-- rd_terminate: end the run at once; its code gets no chance to react.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id, reason
-- Returns {'ok'} | {'not_found'} | {'not_running', status}.
redis.register_function('rd_terminate', function(keys, args)
  local c = ctx(keys, args)
  local bad = check_running(c)
  if bad then return bad end
  local ts = now_ms()
  flush_buffer(c)
  append(c, 'WorkflowExecutionTerminated', ts, {'reason', args[4]})
  redis.call('HSET', c.wf, 'failure', cjson.encode({message = args[4], kind = 'terminated',
    type = 'TerminatedError', non_retryable = true}))
  close_run(c, 'TERMINATED', ts)
  return {'ok'}
end)
