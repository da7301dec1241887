-- Run chains (docs/design-notes.md "Run chains and cron"): the next run of a chain
-- (continue-as-new, or the next run of a cron workflow) takes over the workflow's keys,
-- and the closed run is kept readable by its run id under `run:<run_id>` (a copy of
-- its state hash as it closed) and `run:<run_id>:history` (its history stream,
-- renamed), for the namespace's run retention (state field run_retention_ms, set at
-- start from the namespace config; engine/run_chain.py). Both keys expire then.

-- engine/limits.py DEFAULT_RUN_RETENTION_MS: closed runs of a chain are kept 7 days.
local DEFAULT_RUN_RETENTION_MS = 7 * 24 * 3600 * 1000
-- A cron fire handed to a worker ('N' timer) comes back this much later unless the
-- worker starts the next run (rd_cron_next) first: a worker that dies holding it
-- delays the chain, never ends it.
local CRON_LEASE_MS = 10000

-- Keep the closed run `run_id` (its state as it closed and its history) for the
-- retention; `next_run` is the run that follows it. A retention <= 0 keeps nothing.
local function archive_run(c, run_id, next_run, retention_ms)
  local keep_ms = tonumber(retention_ms) or DEFAULT_RUN_RETENTION_MS
  if keep_ms <= 0 then return end
  local state = key_closed_run(c.prefix, run_id)
  local flat = redis.call('HGETALL', c.wf)
  redis.call('DEL', state)
  for i = 1, #flat, 2 do redis.call('HSET', state, flat[i], flat[i + 1]) end
  redis.call('HSET', state, 'new_execution_run_id', next_run)
  redis.call('PEXPIRE', state, keep_ms)
  if redis.call('EXISTS', c.hist) == 1 then
    local hist = key_closed_run_history(c.prefix, run_id)
    redis.call('RENAME', c.hist, hist)
    redis.call('PEXPIRE', hist, keep_ms)
  end
end

local function nonempty(value)
  if value and value ~= '' then return value end
  return nil
end

-- The closed run in the workflow's keys is followed by run `new_run_id` of the same
-- chain: archive it, then start the new run with what the chain keeps (memo, type and
-- task queue unless `change` gives others; timeouts, execution deadline, retention,
-- cron schedule). `change.backoff_ms`: the new run's first workflow task waits that long.
local function start_next_run(c, new_run_id, input, ts, change)
  local info = redis.call('HMGET', c.wf, 'type', 'task_queue', 'run_id', 'first_run_id',
    'memo', 'execution_timeout_ms', 'run_timeout_ms', 'task_timeout_ms',
    'execution_deadline', 'run_retention_ms', 'cron_schedule')
  archive_run(c, info[3], new_run_id, info[10])
  -- The run's search attributes go on with the chain (05_visibility.lua).
  local kept = sa_clear(c)
  remove_from_indexes(c)
  new_run(c, new_run_id, nonempty(change.workflow_type) or info[1],
    nonempty(change.task_queue) or info[2], input, 1, ts, {
      continued_run = info[3], first_run = info[4] or info[3],
      memo = nonempty(change.memo) or info[5], exec_ms = info[6], run_ms = info[7],
      task_ms = info[8], exec_deadline = info[9], retention_ms = info[10],
      cron = info[11], backoff_ms = change.backoff_ms, search_attributes = kept})
  sa_apply(c, kept)
end

-- Does a cron chain go on after its run closed so? Terminate and cancel end it (as in
-- Temporal), so does the chain's execution timeout; success, failure and the run's
-- own timeout do not.
local function cron_goes_on(status, failure)
  if status == 'COMPLETED' or status == 'FAILED' then return true end
  return status == 'TIMED_OUT' and not string.find(failure or '', '"timeout_type":"execution"', 1, true)
end

-- A due 'N' timer (fired by rd_fire_timers): the cron run closed and the next one is
-- to be started at the next cron time, which only a worker can compute (the cron
-- expression is parsed by a library, engine/cron.py). Returns what the worker needs,
-- {workflow id, closed run id, cron schedule, close time}, or nil when the chain has
-- moved on or ended; the member stays leased until rd_cron_next removes it.
local function cron_due(c, member, ts)
  local info = redis.call('HMGET', c.wf, 'run_id', 'status', 'cron_schedule', 'close_time',
    'failure')
  if info[1] ~= c.run or not info[3] or not cron_goes_on(info[2], info[5]) then return nil end
  add_timer(c.timers, ts + CRON_LEASE_MS, member)
  return {c.id, c.run, info[3], info[4] or ts}
end

-- rd_cron_next: start the next run of a cron chain whose run `run_id` closed.
-- KEYS: wf, history, buffer
-- ARGV: prefix, workflow_id, run_id (the closed run), new_run_id, next_ms (the next
--       cron time on the server's clock: the new run's first workflow task waits for it)
-- Returns {'ok', new_run_id, due_in} (ms until the new run's first task or timeout
-- falls due: the worker's timer loop wakes only when that is before its next scan) or
-- {'stale'} (the chain moved on or ended: nothing written
-- but the timer's removal). Idempotent: a second call for the same closed run is stale.
redis.register_function('rd_cron_next', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local member = timer_member('N', c.run, 0, 0, c.id)
  redis.call('ZREM', c.timers, member)
  local info = redis.call('HMGET', c.wf, 'run_id', 'status', 'cron_schedule', 'failure')
  if info[1] ~= c.run or not info[3] or not cron_goes_on(info[2], info[4]) then
    return {'stale'}
  end
  -- Every run of a cron chain gets the first run's input (as in Temporal).
  local first = redis.call('XRANGE', c.hist, '-', '+', 'COUNT', 1)
  local input = ''
  if first[1] then
    local fields = first[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'input' then input = fields[i + 1] end
    end
  end
  local ts = now_ms()
  timers_added_reset()
  start_next_run(c, args[4], input, ts, {backoff_ms = math.max(0, tonumber(args[5]) - ts)})
  return {'ok', args[4], timers_added_in(ts)}
end)
