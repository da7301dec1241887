-- Activity state helpers shared by the activity, workflow-task, claim and timer functions
-- (loaded right after 00_common.lua and 01_hot_read.lua; they use 00_common.lua's helpers).

local function get_activity(c, seq)
  local raw = redis.call('HGET', c.wf, 'act:' .. seq)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function put_activity(c, seq, state)
  redis.call('HSET', c.wf, 'act:' .. seq, cjson.encode(state))
end

local function forget_activity(c, seq)
  redis.call('HDEL', c.wf, 'act:' .. seq, 'actin:' .. seq, 'acthb:' .. seq)
end

local function clear_attempt_timers(c, seq, attempt)
  redis.call('ZREM', c.timers, timer_member('S', c.run, seq, attempt, c.id),
    timer_member('H', c.run, seq, attempt, c.id), timer_member('Q', c.run, seq, attempt, c.id))
end

-- How an attempt cancelled at the workflow's request ended, in its ActivityTaskFailed:
-- fixed bytes (engine.activities.CANCELLED_FAILURE), so that a worker running a one-write
-- step on the event (rd_act_fail_wft) builds exactly what the history records.
local CANCELLED_FAILURE = '{"message":"activity cancelled","kind":"cancelled",' ..
  '"type":"CancelledError","non_retryable":true}'
local function cancelled_failure()
  return CANCELLED_FAILURE
end

-- Delay before the next attempt, or nil when the failure is final.
local function retry_delay(state, err_type, non_retryable, ts)
  -- Cancelled while it ran (WAIT_CANCELLATION_COMPLETED): however the attempt ends is
  -- how the activity ends, the workflow waits for just that.
  if non_retryable or state.cancel_requested then return nil end
  local rp = state.retry or {}
  local max_attempts = tonumber(rp.maximum_attempts) or 0
  if max_attempts > 0 and state.attempt >= max_attempts then return nil end
  if type(rp.non_retryable_error_types) == 'table' then
    for _, t in ipairs(rp.non_retryable_error_types) do
      if t == err_type then return nil end
    end
  end
  local initial = tonumber(rp.initial_interval_ms) or 1000
  local coeff = tonumber(rp.backoff_coefficient) or 2.0
  local maximum = tonumber(rp.maximum_interval_ms) or (initial * 100)
  local delay = math.floor(math.min(initial * coeff ^ (state.attempt - 1), maximum))
  local stc = tonumber(state.schedule_to_close_ms)
  if stc and stc > 0 and ts + delay >= state.scheduled + stc then return nil end
  return delay
end

-- The task carries what a worker needs to run the attempt at once: type, input, the
-- last heartbeat details, and the timeouts that decide when it must mark it started.
-- A schedule-to-start timeout ('Q' timer) ends the attempt unless it is marked started
-- by then (rd_act_start); the field tells the worker to mark it at once.
-- `data` (optional): {input, heartbeat details} when the caller knows them (a new
-- activity: its input, no details yet), else read.
local function enqueue_activity(c, seq, attempt, state, data)
  data = data or redis.call('HMGET', c.wf, 'actin:' .. seq, 'acthb:' .. seq)
  local fields = {'workflow_id', c.id, 'run_id', c.run, 'activity_id', seq,
    'attempt', attempt, 'activity_type', state.type,
    'start_to_close_ms', tonumber(state.start_to_close_ms) or 0,
    'heartbeat_ms', tonumber(state.heartbeat_ms) or 0,
    'input', data[1] or '', 'heartbeat_details', data[2] or ''}
  if type(state.header) == 'table' then  -- interceptors' headers (sdk/interceptor.py)
    fields[#fields + 1] = 'header'
    fields[#fields + 1] = cjson.encode(state.header)
  end
  local sts = tonumber(state.schedule_to_start_ms)
  if sts and sts > 0 then
    fields[#fields + 1] = 'schedule_to_start_ms'
    fields[#fields + 1] = sts
    add_timer(c.timers, now_ms() + sts, timer_member('Q', c.run, seq, attempt, c.id))
  end
  redis.call('XADD', key_activity_tasks(c.prefix, state.tq), '*', unpack(fields))
end

-- A failure as the activity's state can keep it: cjson decodes NaN and Infinity (a
-- worker's failure JSON has them when an error's details hold such a float) but will
-- not encode them, and put_activity would fail after the attempt's task was
-- acknowledged and its timers cleared (no retry armed: the activity lost). Such a
-- failure keeps its message and type (the history's event keeps the whole of it).
local function storable_failure(failure)
  if type(failure) == 'table' and pcall(cjson.encode, failure) then return failure end
  local kept = {message = 'activity failed'}
  if type(failure) == 'table' then
    for _, k in ipairs({'message', 'type', 'kind'}) do
      if type(failure[k]) == 'string' then kept[k] = failure[k] end
    end
    kept.non_retryable = failure.non_retryable == true
  end
  return kept
end

local function retry_activity(c, seq, state, failure, delay, ts)
  state.attempt = state.attempt + 1
  state.last_failure = storable_failure(failure)
  state.started = nil
  state.msg = nil
  state.next_attempt_at = ts + delay
  put_activity(c, seq, state)
  add_timer(c.timers, ts + delay,
    timer_member('R', c.run, seq, state.attempt, c.id))
end

-- `no_task`: appended with no workflow task queued (a one-write step writes the task's
-- completion itself: rd_act_complete_wft).
local function finish_activity(c, seq, state, etype, payload_field, payload, ts, no_task)
  -- One ZREM, of the timers this activity may have armed: S only once started
  -- (rd_act_start), H with a heartbeat timeout, Q with a schedule-to-start and C with a
  -- schedule-to-close one (none, often: an attempt that ends at once was never marked).
  local members = {}
  local function may_have(kind, armed, a, b)
    if armed then members[#members + 1] = timer_member(kind, c.run, seq, a, c.id) end
  end
  local attempt = state.attempt
  may_have('S', state.started, attempt)
  may_have('H', (tonumber(state.heartbeat_ms) or 0) > 0, attempt)
  may_have('Q', (tonumber(state.schedule_to_start_ms) or 0) > 0, attempt)
  may_have('C', (tonumber(state.schedule_to_close_ms) or 0) > 0, 0)
  if #members > 0 then redis.call('ZREM', c.timers, unpack(members)) end
  forget_activity(c, seq)
  local fields = {'activity_id', seq, payload_field, payload, 'attempt', state.attempt}
  if no_task then
    append(c, etype, ts, fields)
  else
    deliver(c, etype, ts, fields)
  end
end

local function activity_timed_out(c, seq, state, kind, ts)
  local failure = {message = 'activity ' .. state.type .. ' timed out (' .. kind .. ')',
    kind = 'timeout', type = 'ActivityTimeoutError', timeout_type = kind,
    non_retryable = false}
  if state.msg then ack(key_activity_tasks(c.prefix, state.tq), state.msg) end
  clear_attempt_timers(c, seq, state.attempt)
  local delay = nil
  -- As in Temporal, neither schedule-to-close nor schedule-to-start is retried (a
  -- queue without workers would not get one by waiting again).
  if kind ~= 'schedule_to_close' and kind ~= 'schedule_to_start' then
    delay = retry_delay(state, 'ActivityTimeoutError', false, ts)
  end
  if delay then
    retry_activity(c, seq, state, failure, delay, ts)
  else
    finish_activity(c, seq, state, 'ActivityTaskTimedOut', 'failure', cjson.encode(failure), ts)
  end
end
