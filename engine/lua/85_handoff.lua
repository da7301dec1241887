-- Cross-shard hand-off (docs/design-notes.md "Cross-shard hand-off").
--
-- A transition that must change a workflow in another shard (start a child, report a
-- child's close to its parent, apply a parent close policy, signal or cancel another
-- workflow) adds an entry to its own shard's outbox stream, key_outbox(prefix), in the
-- same atomic call. Workers read the outboxes with the consumer group GROUP (claimed
-- from dead workers, dead-lettered after too many deliveries, as task streams are) and
-- apply each entry with one call of rd_handoff in the TARGET shard, then XACK it.
-- Every entry carries a request id: the target shard remembers applied ids (its
-- requests zset), and each kind also checks the state it would change, so an entry
-- applied twice (a worker died before its XACK) changes nothing the second time.
-- An entry's outcome, when its source waits for one, is a new entry in the target
-- shard's outbox, written in the same call: the hand-off chains, one slot per call.
--
-- Entry fields: kind, target (workflow id), request_id, then the kind's own fields
-- (target_run: the run meant, '' the current one).

local function outbox_add(prefix, kind, target, request_id, fields)
  local cmd = {'XADD', key_outbox(prefix), '*', 'kind', kind, 'target', target,
    'request_id', request_id}
  for i = 1, #fields do cmd[#cmd + 1] = fields[i] end
  redis.call(unpack(cmd))
end

-- --- the source side: commands of a workflow task completion ---------------------------

command_appliers['StartChildWorkflowExecutionInitiated'] = function(c, f, ts)
  redis.call('HSET', c.wf, 'child:' .. f.seq, cjson.encode({id = f.workflow_id,
    run = f.run_id, policy = f.parent_close_policy or 'TERMINATE', started = 0}))
  outbox_add(c.prefix, 'start_child', f.workflow_id, c.run .. ':child:' .. f.seq, {
    'parent_id', c.id, 'parent_run', c.run, 'seq', f.seq, 'run_id', f.run_id,
    'workflow_type', f.workflow_type, 'task_queue', f.task_queue, 'input', f.input,
    'options', f.options or '{}', 'memo', f.memo or '',
    'policy', f.parent_close_policy or 'TERMINATE'})
end

command_appliers['SignalExternalWorkflowExecutionInitiated'] = function(c, f, ts)
  redis.call('HSET', c.wf, 'ext:' .. f.seq, 1)
  outbox_add(c.prefix, 'signal', f.workflow_id, c.run .. ':ext:' .. f.seq, {
    'target_run', f.run_id or '', 'signal_name', f.signal_name, 'input', f.input,
    'child_only', f.child_workflow_only or '0', 'header', f.header or '',
    'reply_to', c.id, 'reply_run', c.run, 'seq', f.seq})
end

command_appliers['RequestCancelExternalWorkflowExecutionInitiated'] = function(c, f, ts)
  redis.call('HSET', c.wf, 'ext:' .. f.seq, 1)
  outbox_add(c.prefix, 'cancel', f.workflow_id, c.run .. ':ext:' .. f.seq, {
    'target_run', f.run_id or '', 'child_only', f.child_workflow_only or '0',
    'reason', 'cancel requested by workflow ' .. c.id,
    'reply_to', c.id, 'reply_run', c.run, 'seq', f.seq})
end

-- A child whose parent's run closed: its parent close policy (ABANDON: nothing).
local function apply_close_policy(prefix, child_id, child_run, policy, request_id)
  if policy == 'TERMINATE' then
    outbox_add(prefix, 'terminate', child_id, request_id, {'target_run', child_run,
      'reason', 'parent closed (parent_close_policy TERMINATE)'})
  elseif policy == 'REQUEST_CANCEL' then
    outbox_add(prefix, 'cancel', child_id, request_id, {'target_run', child_run,
      'child_only', '0', 'reason', 'parent closed (parent_close_policy REQUEST_CANCEL)'})
  end
end

-- When a run closes: its parent hears how (unless it continues as new: the next run
-- keeps the parent), and its started children get their close policy. A child still
-- starting gets it when its start is reported to the closed parent (child_started).
-- Its fields are read with close_run's (00_common.lua close_fields).
local parent_fields = {'parent_id', 'parent_run_id', 'parent_seq', 'result', 'failure'}
for i = 1, #parent_fields do close_fields[#close_fields + 1] = parent_fields[i] end
close_hooks[#close_hooks + 1] = function(c, status, ts, run, got, names)
  if got.parent_id then
    if status == 'CONTINUED_AS_NEW' then
      c.carry_parent = {id = got.parent_id, run = got.parent_run_id, seq = got.parent_seq}
    else
      local fields = {'target_run', got.parent_run_id, 'seq', got.parent_seq,
        'workflow_id', c.id, 'run_id', run, 'status', status}
      if status == 'COMPLETED' then
        fields[#fields + 1] = 'result'
        fields[#fields + 1] = got.result or ''
      elseif got.failure then
        fields[#fields + 1] = 'failure'
        fields[#fields + 1] = got.failure
      end
      outbox_add(c.prefix, 'child_closed', got.parent_id, run .. ':closed', fields)
    end
  end
  for i = 1, #names do
    local name = names[i]
    if string.sub(name, 1, 6) == 'child:' then
      local child = cjson.decode(redis.call('HGET', c.wf, name))
      if tonumber(child.started) == 1 then
        apply_close_policy(c.prefix, child.id, child.run, child.policy, run .. ':close:' .. name)
      end
      redis.call('HDEL', c.wf, name)
    elseif string.sub(name, 1, 4) == 'ext:' then
      redis.call('HDEL', c.wf, name)
    end
  end
end

-- A child's run (or the next one of its chain) records its parent.
new_run_hooks[#new_run_hooks + 1] = function(c, opts, fields)
  local parent = opts.parent or c.carry_parent
  c.carry_parent = nil
  if not parent then return end
  redis.call('HSET', c.wf, 'parent_id', parent.id, 'parent_run_id', parent.run,
    'parent_seq', parent.seq)
  fields[#fields + 1] = 'parent_workflow_id'
  fields[#fields + 1] = parent.id
  fields[#fields + 1] = 'parent_run_id'
  fields[#fields + 1] = parent.run
end

-- --- the target side: one handler per kind ----------------------------------------------

local function waiting_run(c, run)
  local info = redis.call('HMGET', c.wf, 'run_id', 'status')
  return info[1] == run and info[2] == 'RUNNING'
end

-- Start statuses ALLOW_DUPLICATE_FAILED_ONLY starts again after (as rd_start).
local RESTARTABLE = {FAILED = true, CANCELED = true, TERMINATED = true, TIMED_OUT = true}

local handlers = {}

handlers.start_child = function(c, f, req, ts)
  local info = redis.call('HMGET', c.wf, 'status', 'run_id')
  if info[2] == f.run_id then return 'seen' end  -- started by this entry before
  local o = cjson.decode(f.options or '{}')
  local reuse = o.reuse or 'ALLOW_DUPLICATE'
  local taken = info[1] == 'RUNNING' or (info[1] and (reuse == 'REJECT_DUPLICATE' or
    (reuse == 'ALLOW_DUPLICATE_FAILED_ONLY' and not RESTARTABLE[info[1]])))
  if taken then
    outbox_add(c.prefix, 'child_start_failed', f.parent_id, req .. ':reply', {
      'target_run', f.parent_run, 'seq', f.seq, 'workflow_id', c.id,
      'cause', 'WORKFLOW_ALREADY_EXISTS', 'run_id', info[2] or ''})
    return 'already_started'
  end
  if info[1] then remove_from_indexes(c) end
  new_run(c, f.run_id, f.workflow_type, f.task_queue, f.input, 1, ts, {memo = f.memo,
    exec_ms = o.exec_ms, run_ms = o.run_ms, task_ms = o.task_ms, header = o.header,
    parent = {id = f.parent_id, run = f.parent_run, seq = f.seq}})
  outbox_add(c.prefix, 'child_started', f.parent_id, req .. ':reply', {
    'target_run', f.parent_run, 'seq', f.seq, 'workflow_id', c.id, 'run_id', f.run_id,
    'policy', f.policy or 'TERMINATE'})
  return 'started'
end

handlers.child_started = function(c, f, req, ts)
  if not waiting_run(c, f.target_run) then
    -- The parent's run closed before its child started: the close policy applies now.
    apply_close_policy(c.prefix, f.workflow_id, f.run_id, f.policy, req .. ':close')
    return 'parent_closed'
  end
  local raw = redis.call('HGET', c.wf, 'child:' .. f.seq)
  if not raw then return 'seen' end
  local child = cjson.decode(raw)
  if tonumber(child.started) == 1 then return 'seen' end
  child.started = 1
  redis.call('HSET', c.wf, 'child:' .. f.seq, cjson.encode(child))
  deliver(c, 'ChildWorkflowExecutionStarted', ts,
    {'seq', f.seq, 'workflow_id', f.workflow_id, 'run_id', f.run_id})
  return 'ok'
end

handlers.child_start_failed = function(c, f, req, ts)
  if not waiting_run(c, f.target_run) then return 'parent_closed' end
  if redis.call('HDEL', c.wf, 'child:' .. f.seq) == 0 then return 'seen' end
  deliver(c, 'StartChildWorkflowExecutionFailed', ts, {'seq', f.seq,
    'workflow_id', f.workflow_id, 'cause', f.cause, 'run_id', f.run_id or ''})
  return 'ok'
end

-- How a child's close is recorded in its parent: event type, and the payload it keeps.
local CHILD_CLOSED = {COMPLETED = 'ChildWorkflowExecutionCompleted',
  FAILED = 'ChildWorkflowExecutionFailed', CANCELED = 'ChildWorkflowExecutionCanceled',
  TERMINATED = 'ChildWorkflowExecutionTerminated', TIMED_OUT = 'ChildWorkflowExecutionTimedOut'}

handlers.child_closed = function(c, f, req, ts)
  if not waiting_run(c, f.target_run) then return 'parent_closed' end
  local raw = redis.call('HGET', c.wf, 'child:' .. f.seq)
  if not raw then return 'seen' end
  redis.call('HDEL', c.wf, 'child:' .. f.seq)
  local base = {'seq', f.seq, 'workflow_id', f.workflow_id, 'run_id', f.run_id}
  if tonumber(cjson.decode(raw).started) ~= 1 then
    -- Its start report has not landed yet (entries may be applied out of order).
    deliver(c, 'ChildWorkflowExecutionStarted', ts, base)
  end
  local etype = CHILD_CLOSED[f.status] or 'ChildWorkflowExecutionTerminated'
  local fields = {unpack(base)}
  if f.status == 'COMPLETED' then
    fields[#fields + 1] = 'result'
    fields[#fields + 1] = f.result or ''
  elseif f.status ~= 'CANCELED' and f.failure then
    fields[#fields + 1] = 'failure'
    fields[#fields + 1] = f.failure
  end
  deliver(c, etype, ts, fields)
  return 'ok'
end

-- The run a signal or cancel is for: nil and Temporal's cause when there is none.
local function target_run_of(c, f)
  local info = redis.call('HMGET', c.wf, 'status', 'run_id', 'parent_id')
  if not info[1] or (f.target_run and f.target_run ~= '' and info[2] ~= f.target_run) or
      (f.child_only == '1' and info[3] ~= f.reply_to) then
    return nil, 'EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND'
  end
  if info[1] ~= 'RUNNING' then return nil, 'EXTERNAL_WORKFLOW_EXECUTION_NOT_RUNNING' end
  return info[2], nil
end

local function reply(c, f, req, kind, run, cause)
  if not f.reply_to or f.reply_to == '' then return end
  outbox_add(c.prefix, kind, f.reply_to, req .. ':reply', {'target_run', f.reply_run,
    'seq', f.seq, 'workflow_id', c.id, 'run_id', run or '', 'cause', cause or ''})
end

handlers.signal = function(c, f, req, ts)
  local run, cause = target_run_of(c, f)
  if run then
    local events, limit = history_size(c)
    if events + redis.call('LLEN', c.buf) >= limit then
      run, cause = nil, 'HISTORY_LIMIT'
    else
      local fields = {'signal_name', f.signal_name, 'input', f.input}
      if f.header and f.header ~= '' then  -- interceptors' headers (sdk/interceptor.py)
        fields[#fields + 1] = 'header'
        fields[#fields + 1] = f.header
      end
      deliver(c, 'WorkflowExecutionSignaled', ts, fields)
    end
  end
  reply(c, f, req, 'signal_result', run, cause)
  return cause or 'ok'
end

handlers.cancel = function(c, f, req, ts)
  local run, cause = target_run_of(c, f)
  if run and redis.call('HSETNX', c.wf, 'cancel_requested', 1) == 1 then
    deliver(c, 'WorkflowExecutionCancelRequested', ts, {'reason', f.reason or ''})
  end
  reply(c, f, req, 'cancel_result', run, cause)
  return cause or 'ok'
end

handlers.terminate = function(c, f, req, ts)
  local run, cause = target_run_of(c, f)
  if run then terminate_run(c, f.reason or 'terminated', ts) end
  return cause or 'ok'
end

local function external_result(ok_type, failed_type)
  return function(c, f, req, ts)
    if not waiting_run(c, f.target_run) then return 'sender_closed' end
    if redis.call('HDEL', c.wf, 'ext:' .. f.seq) == 0 then return 'seen' end
    if f.cause == '' then
      deliver(c, ok_type, ts, {'seq', f.seq, 'workflow_id', f.workflow_id, 'run_id', f.run_id})
    else
      deliver(c, failed_type, ts, {'seq', f.seq, 'workflow_id', f.workflow_id,
        'cause', f.cause})
    end
    return 'ok'
  end
end

handlers.signal_result = external_result('ExternalWorkflowExecutionSignaled',
  'SignalExternalWorkflowExecutionFailed')
handlers.cancel_result = external_result('ExternalWorkflowExecutionCancelRequested',
  'RequestCancelExternalWorkflowExecutionFailed')

-- rd_handoff: apply one outbox entry in its target's shard.
-- KEYS: target's wf, history, buffer, the target shard's requests zset
-- ARGV: prefix (target shard's), target workflow id, request window ms,
--       then the entry's fields: name, value, ...
-- Returns {'ok', outcome, due_in} ('seen' when it was applied before; due_in: ms until
-- the earliest timer it added falls due, -1 none: a child's timeouts, a cron follow-up
-- of a run it terminated) or an error for an entry that is not well formed (the worker
-- dead-letters it).
redis.register_function('rd_handoff', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local f = {}
  for i = 4, #args, 2 do f[args[i]] = args[i + 1] end
  local handler = handlers[f.kind]
  if not handler or not f.request_id or f.request_id == '' then
    return redis.error_reply('ERR malformed hand-off entry (kind ' .. tostring(f.kind) .. ')')
  end
  local c = ctx(keys, {args[1], args[2], f.target_run or ''})
  if request_seen(keys[4], f.request_id) then return {'ok', 'seen', -1} end
  local ts = now_ms()
  timers_added_reset()
  local outcome = handler(c, f, f.request_id, ts)
  request_done(keys[4], f.request_id, args[3], ts)
  return {'ok', outcome, timers_added_in(ts)}
end)

-- rd_handoff_ack: an outbox entry was applied: acknowledge and delete it.
-- KEYS: outbox stream
-- ARGV: entry id
redis.register_function('rd_handoff_ack', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  ack(keys[1], args[1])
  return 1
end)
