-- Workflow updates (engine/updates.py, docs/design-notes.md "Updates").
--
-- An update is admitted by rd_update: its state goes to the workflow's updates hash
-- (update id -> netstrings: run, stage, name, input, outcome, value) and its id to the
-- inbox list, and a workflow task is queued if none is, carrying the request so that a
-- worker whose cached machine is current runs it at once. The completion of the
-- workflow task that ran it writes WorkflowExecutionUpdateAccepted (the validator
-- passed) or only the rejection (no event), and WorkflowExecutionUpdateCompleted when
-- the handler ends; each stage change is published (SPUBLISH) on the shard's updates channel as
-- "<workflow id>\n<update id>", so a waiting client learns it without polling. Every
-- key is the workflow's or its shard's: one hash slot.

local function get_update(c, uid)
  local raw = redis.call('HGET', key_updates(c.prefix, c.id), uid)
  if not raw then return nil end
  local p = unpack_strings(raw)
  return {run = p[1], stage = p[2], name = p[3], input = p[4], outcome = p[5], value = p[6]}
end

local function put_update(c, uid, u)
  redis.call('HSET', key_updates(c.prefix, c.id), uid,
    pack_strings({u.run, u.stage, u.name, u.input, u.outcome, u.value}))
end

local function announce_update(c, uid)
  redis.call('SPUBLISH', key_updates_channel(c.prefix), c.id .. '\n' .. uid)
end

-- Ids in the inbox that are still waiting for a workflow task of the current run.
local function waiting_updates(c)
  local ids = redis.call('LRANGE', key_update_inbox(c.prefix, c.id), 0, -1)
  if #ids == 0 then return {}, {} end
  local run = redis.call('HGET', c.wf, 'run_id')
  local out, states = {}, {}
  for i = 1, #ids do
    local u = get_update(c, ids[i])
    if u and u.run == run and u.stage == 'admitted' then
      out[#out + 1] = ids[i]
      states[#states + 1] = u
    end
  end
  return out, states
end

-- What rd_wft_start hands the worker: {update_id, name, input, ...} of waiting updates.
local function admitted_updates(c)
  local ids, states = waiting_updates(c)
  local out = {}
  for i = 1, #ids do
    out[#out + 1] = ids[i]
    out[#out + 1] = states[i].name
    out[#out + 1] = states[i].input
  end
  return out
end

-- How many waiting updates a completion's commands do not answer (accept or reject):
-- the code has not seen them, so the completion may not close the run and must queue
-- another workflow task (as for events buffered while the task ran).
local function updates_unseen(c, cmds)
  local ids = waiting_updates(c)
  if #ids == 0 then return 0 end
  local seen = {}
  for k = 1, #cmds do
    local kind, fields = cmds[k][1], cmds[k][2]
    if kind == 'WorkflowExecutionUpdateAccepted' or kind == 'UpdateRejected' then
      for j = 1, #fields, 2 do
        if fields[j] == 'update_id' then seen[fields[j + 1]] = true end
      end
    end
  end
  local n = 0
  for i = 1, #ids do
    if not seen[ids[i]] then n = n + 1 end
  end
  return n
end

local UPDATE_KINDS = {WorkflowExecutionUpdateAccepted = true,
  WorkflowExecutionUpdateCompleted = true, UpdateRejected = true}

-- One update command of a completion (rd_wft_complete's apply_command); `f` is
-- `fields` as a table. A rejection writes no event.
local function apply_update_command(c, kind, f, fields, ts)
  local uid = f.update_id
  local u = get_update(c, uid)
  if kind == 'UpdateRejected' then
    if u and u.stage == 'admitted' then
      u.stage, u.outcome, u.value, u.input = 'completed', 'rejected', f.failure, ''
      put_update(c, uid, u)
      redis.call('LREM', key_update_inbox(c.prefix, c.id), 0, uid)
      announce_update(c, uid)
    end
    return
  end
  append(c, kind, ts, fields)
  if not u then return end  -- the history holds it; no caller can wait for it
  if kind == 'WorkflowExecutionUpdateAccepted' then
    if u.stage == 'admitted' then
      u.stage, u.input = 'accepted', ''  -- the input is in the history now
      put_update(c, uid, u)
      redis.call('LREM', key_update_inbox(c.prefix, c.id), 0, uid)
      announce_update(c, uid)
    end
  else
    u.stage = 'completed'
    if f.failure then
      u.outcome, u.value = 'failure', f.failure
    else
      u.outcome, u.value = 'success', f.result or ''
    end
    put_update(c, uid, u)
    announce_update(c, uid)
  end
end

-- The types a history may end with after an activation's decisions (its boundary and
-- command events). Any other type (an input, or one this code does not know) means
-- the activation being completed had inputs.
local AFTER_DECISIONS = {WorkflowTaskCompleted = true, ActivityTaskScheduled = true,
  ActivityTaskCanceled = true, TimerStarted = true, TimerCanceled = true,
  MarkerRecorded = true, WorkflowExecutionUpdateAccepted = true,
  WorkflowExecutionUpdateCompleted = true}

-- True when a completion only rejects updates and its activation had no input event:
-- it decided nothing, so no boundary is written either (a rejection leaves the history
-- as it was, as Temporal's speculative workflow tasks do). Sets c.last_id/last_sid to
-- the history's last event, which the reply names.
local function rejections_only(c, cmds)
  if #cmds == 0 then return false end
  for k = 1, #cmds do
    if cmds[k][1] ~= 'UpdateRejected' then return false end
  end
  local last = redis.call('XREVRANGE', c.hist, '+', '-', 'COUNT', 1)
  if #last == 0 then return false end
  local f = {}
  for j = 1, #last[1][2], 2 do f[last[1][2][j]] = last[1][2][j + 1] end
  if not AFTER_DECISIONS[f.type] then return false end
  c.last_id, c.last_sid = tonumber(f.id), last[1][1]
  return true
end

-- rd_update: admit an update, or answer the state of a known update id (the same id
-- again is applied once: its outcome, also after the run closed).
-- KEYS: wf, history, buffer, updates, update inbox
-- ARGV: prefix, workflow_id, run_id ('' = current run), update_id, name, input
-- Returns {'ok', stage, outcome, value, run_id} | {'not_found'} |
--         {'not_running', status} | {'history_limit', message}.
redis.register_function('rd_update', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local c = ctx(keys, args)
  local uid = args[4]
  local u = get_update(c, uid)
  if u then return {'ok', u.stage, u.outcome, u.value, u.run} end
  local bad = check_running(c)
  if bad then return bad end
  local events, limit = history_size(c)
  if events + redis.call('LLEN', c.buf) + 2 > limit then
    return {'history_limit', history_limit_message(events, limit)}
  end
  local ts = now_ms()
  local info = redis.call('HMGET', c.wf, 'run_id', 'wft', 'next_event_id')
  -- Ids left by an earlier run (it closed before taking them) go first.
  local inbox = key_update_inbox(c.prefix, c.id)
  if redis.call('LLEN', inbox) > 0 then
    local keep = waiting_updates(c)
    redis.call('DEL', inbox)
    if #keep > 0 then redis.call('RPUSH', inbox, unpack(keep)) end
  end
  put_update(c, uid, {run = info[1], stage = 'admitted', name = args[5], input = args[6],
    outcome = '', value = ''})
  redis.call('RPUSH', inbox, uid)
  if info[2] == 'none' then
    schedule_wft(c, packed_event(info[3], 'WorkflowExecutionUpdateAdmitted', ts,
      {'update_id', uid, 'name', args[5], 'input', args[6]}))
  end
  return {'ok', 'admitted', '', '', info[1]}
end)

-- rd_update_state: where an update is, and its run's status (read only).
-- KEYS: wf, updates
-- ARGV: update_id
-- Returns {} for an unknown id, else {stage, outcome, value, run_id, status, current run}.
redis.register_function{function_name = 'rd_update_state', flags = {'no-writes'},
  callback = function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
    local raw = redis.call('HGET', keys[2], args[1])
    if not raw then return {} end
    local p = unpack_strings(raw)
    local info = redis.call('HMGET', keys[1], 'status', 'run_id')
    return {p[2], p[5], p[6], p[1], info[1] or '', info[2] or ''}
  end}
