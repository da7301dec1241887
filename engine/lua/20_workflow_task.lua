-- Workflow task transitions: start, complete, fail.

-- (`hot`: read the hash with hot_read, for a completion's wft_commit to use.)
local function wft_fenced(c, epoch, token, hot)
  local info
  if hot then
    hot_read(c, {})
    local h = c.h
    info = {h.run_id, h.status, h.wft_epoch, h.wft, h.wft_token}
  else
    info = redis.call('HMGET', c.wf, 'run_id', 'status', 'wft_epoch', 'wft', 'wft_token')
  end
  if info[1] ~= c.run or info[2] ~= 'RUNNING' or info[3] ~= epoch then return false end
  if token == nil then return info[4] == 'scheduled' or info[4] == 'started' end
  if token == '' then return info[4] == 'scheduled' end  -- speculative: never started
  return info[4] == 'started' and info[5] == token
end

-- rd_wft_start: a worker took a workflow task; returns the history it has not seen.
-- KEYS: wf, history, buffer, workflow task stream
-- ARGV: prefix, workflow_id, run_id, epoch, msg_id, after_stream_id ('' = all),
--       timeout_ms (unless the run has its own task_timeout_ms)
-- Returns {'ok', token, now_ms, attempt, entries, updates, due_in, next_event_id} or
-- {'stale'} (message acknowledged); updates: {update_id, name, input, ...} waiting for
-- this task; due_in: ms until the task's deadline (the timer it added: see
-- rd_wft_complete); next_event_id lets a worker whose cached run is ahead of the history
-- (a failover lost transitions it saw committed) find that out although no entry follows
-- its cursor.
redis.register_function('rd_wft_start', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local epoch, msg = args[4], args[5]
  if not wft_fenced(c, epoch, nil) then
    ack(c.task, msg)
    return {'stale'}
  end
  local ts = now_ms()
  timers_added_reset()
  local token = redis.call('HINCRBY', c.wf, 'wft_token', 1)
  -- The stream too: the task may be on its owner's sticky stream (the 'W' timer acks it).
  local info = redis.call('HMGET', c.wf, 'task_queue', 'wft_attempt', 'task_timeout_ms',
    'next_event_id')
  redis.call('HSET', c.wf, 'wft', 'started', 'wft_msg', msg, 'wft_task', c.task)
  if c.task ~= key_workflow_tasks(c.prefix, info[1]) then  -- a sticky task: no deadline now
    redis.call('ZREM', key_sticky_timers(c.prefix), timer_member('K', c.run, epoch, 0, c.id))
  end
  -- The run's task_timeout (a start option) wins over the worker's default.
  local timeout = tonumber(info[3]) or tonumber(args[7])
  add_timer(c.timers, ts + timeout,
    timer_member('W', c.run, epoch, token, c.id))
  local from = '-'
  if args[6] ~= '' then from = '(' .. args[6] end
  local entries = redis.call('XRANGE', c.hist, from, '+')
  return {'ok', token, ts, info[2], entries, admitted_updates(c), timers_added_in(ts),
    info[4]}
end)

-- rd_wft_extend: the worker that started a workflow task is still at it (running the
-- local activities its code waits for): the task's deadline moves to now + timeout_ms.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id, epoch, token, timeout_ms
-- Returns 1 when the task is still the caller's, else 0 (timed out, or fenced).
redis.register_function('rd_wft_extend', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local epoch, token = args[4], args[5]
  if not wft_fenced(c, epoch, token) then return 0 end
  local member = timer_member('W', c.run, epoch, token, c.id)
  if not redis.call('ZSCORE', c.timers, member) then return 0 end
  add_timer(c.timers, now_ms() + tonumber(args[6]), member)
  return 1
end)

-- The first entry of a one-stream XREADGROUP reply, or nil. (Redis nests it as
-- {{stream, entries}}; fakeredis, used in unit tests, gives {stream, entries}.)
local function first_entry(read)
  if type(read) ~= 'table' or #read == 0 then return nil end
  local per_stream = read[1]
  if type(per_stream) ~= 'table' then per_stream = read end
  local entries = per_stream[2]
  if type(entries) ~= 'table' then return nil end
  return entries[1]
end

-- Cancellation types (sdk ActivityCancellationType, by name in the options) for which
-- the workflow waits until the cancelled attempt has ended.
local WAITS_FOR_CANCEL = {WAIT_CANCELLATION_COMPLETED = true}

-- Apply one command of a completion. Returns 'closed' when the run ended.
-- (`opts`: an ActivityTaskScheduled's options, decoded by parse_commands.)
local function apply_command(c, kind, fields, ts, opts)
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  if kind == 'ActivityTaskScheduled' then
    append(c, kind, ts, fields)
    local seq = f.activity_id
    local state = {type = f.activity_type, tq = f.task_queue, attempt = 1, scheduled = ts,
      retry = opts.retry, start_to_close_ms = opts.start_to_close_ms,
      schedule_to_close_ms = opts.schedule_to_close_ms,
      schedule_to_start_ms = opts.schedule_to_start_ms,
      heartbeat_ms = opts.heartbeat_ms, header = opts.header}
    if WAITS_FOR_CANCEL[opts.cancellation_type] then state.wait_cancel = true end
    redis.call('HSET', c.wf, 'act:' .. seq, cjson.encode(state), 'actin:' .. seq, f.input)
    enqueue_activity(c, seq, 1, state, {f.input, false})
    if c.eager_slots > 0 and f.task_queue == c.task_queue then
      -- Eager dispatch: the completing worker takes the task it just queued (a normal
      -- delivery to its consumer), saving the wake-up of its activity poller.
      local stream = key_activity_tasks(c.prefix, f.task_queue)
      local read = redis.call('XREADGROUP', 'GROUP', GROUP, c.worker, 'COUNT', 1,
        'STREAMS', stream, '>')
      local entry = first_entry(read)
      if entry then
        c.eager[#c.eager + 1] = {stream, entry[1], entry[2]}
        c.eager_slots = c.eager_slots - 1
      end
    end
    local stc = tonumber(opts.schedule_to_close_ms)
    if stc and stc > 0 then
      add_timer(c.timers, ts + stc, timer_member('C', c.run, seq, 0, c.id))
    end
  elseif kind == 'ActivityTaskCanceled' then
    append(c, kind, ts, fields)
    local state = get_activity(c, f.activity_id)
    if state and state.wait_cancel and not state.next_attempt_at then
      -- WAIT_CANCELLATION_COMPLETED and an attempt queued or running: keep it, so its
      -- worker hears 'cancel' (heartbeat, start) and how it ends is recorded.
      state.cancel_requested = true
      put_activity(c, f.activity_id, state)
    elseif state then
      if state.wait_cancel then
        -- Between attempts: nothing runs, so the activity ended now. Buffered, so it
        -- follows this completion's commands and wakes the workflow in a new task.
        buffer_push(c, {'ActivityTaskFailed', ts, 'activity_id', f.activity_id,
          'failure', cancelled_failure(), 'attempt', state.attempt})
      end
      clear_attempt_timers(c, f.activity_id, state.attempt)
      redis.call('ZREM', c.timers, timer_member('C', c.run, f.activity_id, 0, c.id))
      if state.msg then ack(key_activity_tasks(c.prefix, state.tq), state.msg) end
      forget_activity(c, f.activity_id)
    end
  elseif kind == 'TimerStarted' then
    append(c, kind, ts, fields)
    local member = timer_member('T', c.run, f.timer_id, 0, c.id)
    add_timer(c.timers, ts + tonumber(f.duration_ms), member)
    redis.call('HSET', c.wf, 'timer:' .. f.timer_id, member)
  elseif kind == 'TimerCanceled' then
    append(c, kind, ts, fields)
    local member = redis.call('HGET', c.wf, 'timer:' .. f.timer_id)
    if member then
      redis.call('ZREM', c.timers, member)
      redis.call('HDEL', c.wf, 'timer:' .. f.timer_id)
    end
  elseif UPDATE_KINDS[kind] then
    apply_update_command(c, kind, f, fields, ts)
  elseif kind == 'MarkerRecorded' then
    -- workflow.patched or a local activity's outcome: the marker only goes to
    -- history, for replay to read.
    append(c, kind, ts, fields)
  elseif kind == 'UpsertWorkflowSearchAttributes' then
    append(c, kind, ts, fields)
    local _, attrs = sa_check(f.search_attributes)
    if attrs then sa_apply(c, attrs) end
  elseif kind == 'WorkflowExecutionCompleted' then
    append(c, kind, ts, fields)
    redis.call('HSET', c.wf, 'result', f.result)
    close_run(c, 'COMPLETED', ts)
    return 'closed'
  elseif kind == 'WorkflowExecutionFailed' then
    append(c, kind, ts, fields)
    redis.call('HSET', c.wf, 'failure', f.failure)
    close_run(c, 'FAILED', ts)
    return 'closed'
  elseif kind == 'WorkflowExecutionCanceled' then
    append(c, kind, ts, fields)
    redis.call('HSET', c.wf, 'failure', cjson.encode({message = 'workflow canceled',
      kind = 'cancelled', type = 'CancelledError', non_retryable = true}))
    close_run(c, 'CANCELED', ts)
    return 'closed'
  elseif kind == 'WorkflowExecutionContinuedAsNew' then
    append(c, kind, ts, fields)
    -- The next run takes over the workflow's keys; this run is kept by its run id
    -- (15_run_chain.lua), with the chain's memo, timeouts and execution deadline.
    close_run(c, 'CONTINUED_AS_NEW', ts)
    start_next_run(c, f.new_run_id, f.input, ts,
      {memo = f.memo, task_queue = f.task_queue, workflow_type = f.workflow_type})
    return 'closed'
  elseif command_appliers[kind] then
    append(c, kind, ts, fields)
    command_appliers[kind](c, f, ts)
  else
    error('unknown command ' .. tostring(kind))
  end
  return nil
end

local CLOSE_KINDS = {WorkflowExecutionCompleted = true, WorkflowExecutionFailed = true,
  WorkflowExecutionCanceled = true, WorkflowExecutionContinuedAsNew = true}

-- The kinds of command whose event ids wft_commit defers, and the fields apply_command
-- needs of them: checked before anything is written, so that no error half way
-- leaves the history ahead of the counter in the hash.
local ID_SAFE_NEEDS = {
  ActivityTaskScheduled = {'activity_id', 'activity_type', 'task_queue', 'input', 'options'},
  ActivityTaskCanceled = {'activity_id'}, TimerStarted = {'timer_id', 'duration_ms'},
  TimerCanceled = {'timer_id'}, MarkerRecorded = {}}

local function id_safe_ok(kind, fields)
  local needs = ID_SAFE_NEEDS[kind]
  if not needs then return true end
  local f = {}
  for j = 1, #fields, 2 do f[fields[j]] = fields[j + 1] end
  for k = 1, #needs do
    if type(f[needs[k]]) ~= 'string' then return false end
  end
  if kind == 'TimerStarted' then
    -- tonumber takes 'nan' and 'inf' too: ZADD refuses the first, half way.
    local ms = tonumber(f.duration_ms)
    return ms ~= nil and ms > -math.huge and ms < math.huge
  end
  return true
end

-- A completion's command list ({kind, fields, decoded options} from args[first]: kind,
-- n_fields, field, value...), or nil when malformed: validated before anything is
-- written. (cjson.decode raises on options that are not JSON: an error reply, nothing
-- written.) Every n_fields is a whole number whose fields and values are all there (an
-- XADD of a field without its value fails half way; n = -1 would stall the walk), and
-- options are what cjson can encode again (apply_command keeps them in the activity's
-- state: cjson decodes NaN and Infinity, which RetryPolicy(backoff_coefficient=inf)
-- sends, and refuses to encode them).
local function parse_commands(args, first)
  if #args < first - 1 then return nil end  -- the fixed arguments before the commands
  local cmds, i = {}, first
  while i <= #args do
    local n = tonumber(args[i + 1])
    if not n or n < 0 or n % 1 ~= 0 or i + 1 + n * 2 > #args then return nil end
    local kind, fields = args[i], {}
    for j = 1, n * 2 do fields[j] = args[i + 1 + j] end
    if not id_safe_ok(kind, fields) then return nil end
    local opts = nil
    if kind == 'ActivityTaskScheduled' then
      for j = 1, #fields, 2 do
        if fields[j] == 'options' then opts = cjson.decode(fields[j + 1]) end
      end
      if type(opts) ~= 'table' or not pcall(cjson.encode, opts) then return nil end
    end
    cmds[#cmds + 1] = {kind, fields, opts}
    i = i + 2 + n * 2
  end
  return cmds
end

-- The fence of a speculative completion (token ''): the task is still scheduled, and
-- no event came after the ones the code saw. Returns nil when it may land, else the
-- reply: {'retry'} (nothing written) or {'stale'} (message acknowledged).
local function speculation_fenced(c, epoch, msg, seen_next_event_id)
  if not wft_fenced(c, epoch, '', true) then
    local h = c.h
    if h.run_id == c.run and h.status == 'RUNNING' and h.wft_epoch == epoch then
      return {'retry'}  -- started meanwhile by someone: take the normal path
    end
    ack(c.task, msg)
    return {'stale'}
  end
  if c.h.next_event_id ~= seen_next_event_id then
    return {'retry'}
  end
  return nil
end

-- The write of a workflow task completion whose fence passed (rd_wft_complete, and
-- rd_act_complete_wft's speculation). `w` has rd_wft_complete's ARGV layout (4: epoch,
-- 5: token, 6: msg_id, 7: worker, 8: now_ms, 9: flags, 11: eager_slots,
-- 12: signals_dropped, 13: sticky, 14: sticky_ms); cmds: parse_commands'.
-- c.h: the hash's HOT_FIELDS read on entry (hot_read). Optional: c.ts (the server's now,
-- read already), c.buffered (the buffer's length, known), c.next_eid (ids deferred).
-- Event ids are deferred (ids_defer) while the commands applied are ones that neither
-- read nor reset the run's counter (ID_SAFE_NEEDS' kinds); the closing HSET writes it.

local function wft_commit(c, w, cmds)
  local epoch, token, msg = w[4], w[5], w[6]
  -- Activity tasks this worker will run at once if they are for its own queue.
  c.eager_slots = tonumber(w[11]) or 0
  c.eager = {}
  c.worker = w[7]
  local h = c.h
  c.task_queue = h.task_queue
  if not c.next_eid then ids_defer(c, h.next_event_id) end
  local ts = c.ts or now_ms()
  timers_added_reset()
  if token ~= '' then
    redis.call('ZREM', c.timers, timer_member('W', c.run, epoch, token, c.id))
  elseif c.task and c.task ~= key_workflow_tasks(c.prefix, c.task_queue) then
    -- A speculative completion of a sticky task: its start deadline is moot now.
    redis.call('ZREM', key_sticky_timers(c.prefix), timer_member('K', c.run, epoch, 0, c.id))
  end
  local buffered = c.buffered or redis.call('LLEN', c.buf)
  local empty_at = nil  -- buf_pushes when the buffer was seen empty (flush_buffer)
  if buffered == 0 then empty_at = buf_pushes end
  -- Updates the code has not seen hold the close back as buffered events do.
  local unseen_updates = updates_unseen(c, cmds)
  local has_buffer = buffered > 0 or unseen_updates > 0
  -- The history limit: a completion that would take the history past it terminates
  -- the run instead, unless it closes the run (so continue-as-new always gets through).
  local events, limit = history_size(c)
  local closes = false
  for k = 1, #cmds do
    if CLOSE_KINDS[cmds[k][1]] then closes = true end
  end
  if not (closes and not has_buffer) and events + 1 + #cmds + buffered > limit then
    local message = history_limit_message(events, limit)
    ids_flush(c)
    ack(c.task, msg)
    flush_buffer(c)
    append(c, 'WorkflowExecutionTerminated', ts, {'reason', message})
    redis.call('HSET', c.wf, 'failure', cjson.encode({message = message, kind = 'terminated',
      type = 'HistoryLimitError', non_retryable = true}))
    close_run(c, 'TERMINATED', ts)
    return {'ok', c.last_id, c.last_sid, 1, 0, {}, timers_added_in(ts), ts}
  end
  local dropped = 0
  for k = 1, #cmds do
    if CLOSE_KINDS[cmds[k][1]] and has_buffer then dropped = 1 end
  end
  -- The boundary records a dropped close, so replay can tell it from code that changed.
  local marker = {'worker', w[7], 'now', w[8], 'flags', w[9]}
  if dropped == 1 then
    marker[#marker + 1] = 'close_dropped'
    marker[#marker + 1] = 1
  end
  -- Signals the code could not take (bad arguments, no handler): why, for show/describe.
  if w[12] ~= '' then
    marker[#marker + 1] = 'signals_dropped'
    marker[#marker + 1] = w[12]
    redis.call('HSET', c.wf, 'last_signal_dropped', w[12])
  end
  if not rejections_only(c, cmds) then append(c, 'WorkflowTaskCompleted', ts, marker) end
  local closed = 0
  for k = 1, #cmds do
    local kind, fields = cmds[k][1], cmds[k][2]
    if CLOSE_KINDS[kind] and has_buffer then
      -- new events arrived: the code must see them before it may close
    else
      if not ID_SAFE_NEEDS[kind] then ids_flush(c) end
      if apply_command(c, kind, fields, ts, cmds[k][3]) == 'closed' then
        closed = 1
        break
      end
    end
  end
  local last_id, last_sid = c.last_id, c.last_sid
  ack(c.task, msg)
  if closed == 0 then
    -- The buffer's events first, so that one HSET writes the deferred counter too.
    local flushed = flush_buffer(c, empty_at)
    local set = {'wft', 'none', 'wft_attempt', 1}
    local gone = {'last_wft_failure', 'wft_msg', 'wft_task'}
    if w[13] ~= '' then
      set[5], set[6], set[7], set[8] = 'sticky', w[13], 'sticky_ms', w[14]
    else
      gone[4], gone[5] = 'sticky', 'sticky_ms'
    end
    if c.eid_dirty then
      set[#set + 1] = 'next_event_id'
      set[#set + 1] = c.next_eid
    end
    c.next_eid, c.eid_dirty = nil, false
    redis.call('HSET', c.wf, unpack(set))
    -- Only the fields the entry read found set (none of them is set on the way).
    local del = {}
    for i = 1, #gone do
      if h[gone[i]] then del[#del + 1] = gone[i] end
    end
    if #del > 0 then redis.call('HDEL', c.wf, unpack(del)) end
    if flushed > 0 or unseen_updates > 0 then schedule_wft(c) end
  end
  return {'ok', last_id, last_sid, closed, dropped, c.eager, timers_added_in(ts), ts}
end

-- rd_wft_complete: write the activation's commands (one atomic transition).
-- KEYS: wf, history, buffer, workflow task stream
-- ARGV: prefix, workflow_id, run_id, epoch, token, msg_id, worker, now_ms, flags,
--       seen_next_event_id, eager_slots, signals_dropped (a note, '' if none),
--       sticky (the worker's sticky name: it keeps the workflow cached and takes its
--       next task; '' = any worker), sticky_ms (how long it has to start that task),
--       then per command: kind, n_fields, field, value...
-- eager_slots > 0: up to that many activity tasks scheduled here on the workflow's own
-- task queue are delivered to this worker (consumer = worker) in the reply.
-- A speculative completion (token '') ran without rd_wft_start, on the event carried
-- by the task; it lands only if the task is still scheduled and no event came after
-- the ones it saw (seen_next_event_id), else it returns {'retry'} and writes nothing.
-- Returns {'ok', last_event_id, last_stream_id, closed(0/1), close_dropped(0/1),
--          {{stream, entry_id, fields}...} (eager activity tasks),
--          ms until the earliest timer the call added falls due (-1: none added),
--          the server's now_ms (the time of the events it appended)},
--      {'retry'}, or {'stale'} (message acknowledged, nothing written).
redis.register_function('rd_wft_complete', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local epoch, token, msg = args[4], args[5], args[6]
  if token == '' then
    local refused = speculation_fenced(c, epoch, msg, args[10])
    if refused then return refused end
  elseif not wft_fenced(c, epoch, token, true) then
    ack(c.task, msg)
    return {'stale'}
  end
  -- Validate the command list before writing anything.
  local cmds = parse_commands(args, 15)
  if not cmds then return redis.error_reply('ERR malformed command list') end
  return wft_commit(c, args, cmds)
end)

local function wft_retry_later(c, epoch, failure, ts)
  local attempt = redis.call('HINCRBY', c.wf, 'wft_attempt', 1)
  redis.call('HSET', c.wf, 'last_wft_failure', failure, 'wft', 'backoff')
  -- The retry may go to any worker (one with fixed code, or a cache that is not cold).
  redis.call('HDEL', c.wf, 'wft_msg', 'wft_task', 'sticky', 'sticky_ms')
  flush_buffer(c)
  local delay = math.min(10000, 100 * 2 ^ (attempt - 2))
  add_timer(c.timers, ts + delay, timer_member('B', c.run, epoch, 0, c.id))
end

-- A poison workflow task (its workflow type is not registered, its input cannot be
-- decoded: no retry can help) leaves the queue for the dead letters. The run stays
-- RUNNING with no task due ('dead': events still append, none schedules a task) until
-- an operator requeues the entry (rd_dlq_requeue) or terminates the workflow.
local function wft_dead_letter(c, epoch, msg, failure, reason, dlq)
  local attempt = redis.call('HGET', c.wf, 'wft_attempt')
  redis.call('HSET', c.wf, 'last_wft_failure', failure, 'wft', 'dead')
  redis.call('HDEL', c.wf, 'wft_msg', 'wft_task', 'sticky', 'sticky_ms')
  flush_buffer(c)
  -- Requeued (rd_dlq_requeue) onto the shared stream: a sticky stream may be gone by then.
  local shared = key_workflow_tasks(c.prefix, redis.call('HGET', c.wf, 'task_queue'))
  local letter = redis.call('XADD', dlq, '*', 'stream', shared, 'message_id', msg,
    'deliveries', attempt, 'reason', reason, 'workflow_id', c.id, 'run_id', c.run,
    'epoch', epoch)
  -- So describe can say which dead letter to requeue (while 'wft' stays 'dead').
  redis.call('HSET', c.wf, 'wft_dead_letter', letter)
end

-- rd_wft_fail: the activation failed (bug, non-determinism, unknown type); retry later,
-- or dead-letter the task when the worker gives a reason (poison, see above).
-- KEYS: wf, history, buffer, workflow task stream[, dead-letter stream]
-- ARGV: prefix, workflow_id, run_id, epoch, token, msg_id, failure_json[, reason]
-- Returns {'ok', due_in} (ms until the retry's backoff timer falls due), {'dead'} or
-- {'stale'}.
redis.register_function('rd_wft_fail', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local epoch, token, msg = args[4], args[5], args[6]
  if not wft_fenced(c, epoch, token) then
    ack(c.task, msg)
    return {'stale'}
  end
  local ts = now_ms()
  redis.call('ZREM', c.timers, timer_member('W', c.run, epoch, token, c.id))
  ack(c.task, msg)
  if keys[5] and args[8] and args[8] ~= '' then
    wft_dead_letter(c, epoch, msg, args[7], args[8], keys[5])
    return {'dead'}
  end
  timers_added_reset()
  wft_retry_later(c, epoch, args[7], ts)
  return {'ok', timers_added_in(ts)}
end)
