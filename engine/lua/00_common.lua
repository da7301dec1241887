-- Shared helpers for every redurable function. Loaded into library "redurable" right
-- after the key helpers generated from engine/keys.py (GROUP, key_<name>(prefix, ...)):
-- every key name built here comes from one of those, never from text of its own.
--
-- Conventions of every per-workflow function:
--   KEYS[1] workflow hash   KEYS[2] history stream   KEYS[3] buffer list
--   KEYS[4] task stream of the message being processed (when there is one)
--   ARGV[1] shard prefix ("redurable:{7}:")   ARGV[2] workflow id   ARGV[3] run id
-- Every function validates first and writes last: Lua does not roll back.
-- Events one run's history may reach (engine/limits.py MAX_HISTORY_EVENTS; the
-- state hash field max_events overrides it per run).
local MAX_HISTORY_EVENTS = 50000

-- Redis Cluster moves a slot key by key (`redis-cli --cluster reshard`: MIGRATE of 10
-- keys at a time). These functions reach keys they do not declare (a shard's timers,
-- indexes, task streams, other workflows named by stored state), and Redis routes a call
-- by its declared keys only: while a shard's slot is half moved, a call could read an
-- empty key whose data is on the other node, write half its effects and then fail, or
-- create on the target a key the source still holds (MIGRATE then stops with BUSYKEY).
-- An EXISTS of two keys that never exist fails inside a script exactly while the slot
-- is moving: on the source (keys missing from a MIGRATING slot: ASK) and on the target
-- (several keys missing under ASKING: TRYAGAIN). Every function calls this first and
-- answers TRYAGAIN before it reads or writes anything; the cluster client retries the
-- call until the slot has moved (engine/resp_cluster.py). A single server skips it.
local cluster_enabled = nil

local function hash_tag(key)
  local open = string.find(key, '{', 1, true)
  if open then
    local close = string.find(key, '}', open + 1, true)
    if close and close > open + 1 then return string.sub(key, open + 1, close - 1) end
  end
  return key
end

local function slot_moving(keys)
  if cluster_enabled == nil then
    -- A single server answers "cluster support disabled" (fakeredis: no such command).
    -- (CLUSTER INFO, not INFO: the namespace's ACL user may run the former only.)
    cluster_enabled = type(redis.pcall('CLUSTER', 'INFO')) == 'string'
  end
  if not cluster_enabled or keys[1] == nil then return nil end
  local tag = hash_tag(keys[1])
  local one, two = key_slot_probes(tag)
  local probe = redis.pcall('EXISTS', one, two)
  if type(probe) == 'table' and probe.err then
    return redis.error_reply('TRYAGAIN the slot of {' .. tag .. '} is moving (' ..
                             probe.err .. ')')
  end
  return nil
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ctx(keys, args)
  return {wf = keys[1], hist = keys[2], buf = keys[3], task = keys[4],
          prefix = args[1], id = args[2], run = args[3], timers = key_timers(args[1])}
end

-- The context of a workflow named by stored state (a timer's member), not by KEYS.
local function ctx_of(prefix, wf_id)
  return {wf = key_workflow(prefix, wf_id), hist = key_history(prefix, wf_id),
          buf = key_buffer(prefix, wf_id), prefix = prefix, id = wf_id,
          timers = key_timers(prefix)}
end

-- Netstrings: the buffer stores events (with binary payloads) as one string each.
local function pack_strings(list)
  local parts = {}
  for i = 1, #list do
    local s = tostring(list[i])
    parts[#parts + 1] = #s .. ':' .. s
  end
  return table.concat(parts)
end

local function unpack_strings(s)
  local out, pos = {}, 1
  while pos <= #s do
    local colon = string.find(s, ':', pos, true)
    local n = tonumber(string.sub(s, pos, colon - 1))
    out[#out + 1] = string.sub(s, colon + 1, colon + n)
    pos = colon + n + 1
  end
  return out
end

-- Append one event; returns its event id and stream entry id. With c.next_eid set
-- (ids_defer: a workflow task completion whose hot read gave the counter), the id comes
-- from it and the hash's next_event_id is written once, by ids_flush or the caller's
-- closing HSET (wft_commit), instead of one HINCRBY per event.
local function append(c, etype, ts, fields)
  local id = c.next_eid
  if id then
    c.next_eid, c.eid_dirty = id + 1, true
  else
    id = redis.call('HINCRBY', c.wf, 'next_event_id', 1) - 1
  end
  local cmd = {'XADD', c.hist, '*', 'id', id, 'type', etype, 'ts', ts}
  for i = 1, #fields do cmd[#cmd + 1] = fields[i] end
  local sid = redis.call(unpack(cmd))
  c.last_id, c.last_sid = id, sid
  return id, sid
end

local function ack(stream, msg_id)
  if stream and msg_id and msg_id ~= '' then
    redis.call('XACK', stream, GROUP, msg_id)
    redis.call('XDEL', stream, msg_id)
  end
end

local function timer_member(kind, run, a, b, wf_id)
  return kind .. '|' .. run .. '|' .. a .. '|' .. b .. '|' .. wf_id
end

-- The earliest due time (server ms) of the timers added since the last
-- timers_added_reset(): rd_wft_complete reports it, so that a worker's timer loop wakes
-- only for a timer due before it meant to scan anyway (sdk/worker/timers.py). Library
-- state that outlives a call: a function that reads it resets it first.
local timers_added_due = nil

local function timers_added_reset() timers_added_due = nil end

-- How many ms after `ts` (the transition's time) the earliest timer added since the
-- reset falls due (0 when due by then), or -1 when none was added.
local function timers_added_in(ts)
  if timers_added_due == nil then return -1 end
  return math.max(0, timers_added_due - ts)
end

-- Every timer goes into a shard's `timers` zset through this (the sticky deadlines of
-- `timers:sticky` do not: the loop scans those once a second whatever happens).
local function add_timer(key, score, member)
  redis.call('ZADD', key, score, member)
  if timers_added_due == nil or score < timers_added_due then timers_added_due = score end
end

-- A timer that a client's call adds (a start's run timeout or first-task backoff, an
-- async activity's retry, a cron run's follow-up after a terminate) wakes no worker's
-- timer loop: it would fire at the next scan of the shard's timer-lease holder, late by
-- up to the lease's lapse if that worker hangs. So a client's Function ends with this:
-- when the earliest timer it added falls due within TIMER_WAKE_WINDOW_MS
-- (engine/timer_leases.py, which pins the two), it adds a wake entry to the shard's
-- wake stream (in the shard's slot: the call stays in one slot). The workers' pollers
-- (but the lease holder's) read that stream in the read they block on; the one that
-- gets the entry scans for that due time without the lease (sdk/worker/timer_wakes.py).
-- A timer due later needs none: a hung holder's lease has lapsed, and another worker
-- holds it, by then.
local TIMER_WAKE_WINDOW_MS = 4000
-- Entries kept at most (about): a namespace whose workers all run an older library
-- reads none of them.
local TIMER_WAKE_MAXLEN = 1000

local function wake_for_timers(prefix, ts)
  local due = timers_added_due
  if due == nil or due - ts > TIMER_WAKE_WINDOW_MS then return end
  redis.call('XADD', key_timer_wake(prefix), 'MAXLEN', '~', TIMER_WAKE_MAXLEN, '*',
    'due_in', math.max(0, due - ts), 'at', ts)
end

-- Sticky routing (docs/design-notes.md "Sticky workflows"): the state hash names the
-- worker that ran the workflow's last task ('sticky', its sticky name) and how long it
-- has to take the next one ('sticky_ms'). Its next task goes to that worker's stream
-- while the stream exists (the worker deletes it when it stops, live workers when it
-- dies), with a 'K' timer that hands the task to every worker if the owner has not
-- started it in time. Returns the stream, and the owner's timeout (nil: shared).
local function wft_stream(c, tq, owner, owner_ms)
  if owner and owner ~= '' then
    local stream = key_sticky_tasks(c.prefix, tq, owner)
    if redis.call('EXISTS', stream) == 1 then return stream, tonumber(owner_ms) or 1000 end
    redis.call('HDEL', c.wf, 'sticky', 'sticky_ms')
  end
  return key_workflow_tasks(c.prefix, tq), nil
end

-- `event` (optional) is the one new event that caused the task, packed with its id:
-- a worker whose cached machine is right before it can run the activation at once and
-- complete speculatively, without a start round trip (see rd_wft_complete).
local function schedule_wft(c, event)
  -- One read and one write (the cost of a Function follows its redis.call count).
  local info = redis.call('HMGET', c.wf, 'task_queue', 'run_id', 'sticky', 'sticky_ms',
    'wft_epoch')
  local epoch = (tonumber(info[5]) or 0) + 1
  redis.call('HSET', c.wf, 'wft', 'scheduled', 'wft_epoch', epoch)
  local stream, sticky_ms = wft_stream(c, info[1], info[3], info[4])
  if event then
    redis.call('XADD', stream, '*',
      'workflow_id', c.id, 'run_id', info[2], 'epoch', epoch, 'event', event)
  else
    redis.call('XADD', stream, '*', 'workflow_id', c.id, 'run_id', info[2], 'epoch', epoch)
  end
  if sticky_ms then
    redis.call('ZADD', key_sticky_timers(c.prefix), (c.ts or now_ms()) + sticky_ms,
      timer_member('K', info[2], epoch, 0, c.id))
  end
end

-- The server's MessagePack, looked up on first use (a library's load may not reach the
-- Lua libraries; nor may it touch a global that is missing: fakeredis, used in unit
-- tests, has no cmsgpack, and its cjson none of the real one's settings, by which it is
-- told apart): false there, and the event goes as netstrings.
local msgpack_pack = nil

local function msgpack_packer()
  if msgpack_pack == nil then
    msgpack_pack = false
    if cjson.encode_max_depth then msgpack_pack = cmsgpack.pack end
  end
  return msgpack_pack
end

-- The event a workflow task carries: a MessagePack array {id, type, ts, field, value...}
-- (id and ts integers, the rest strings: one C call, no per-part length text), read by
-- engine/events.py decode_packed_event, which reads the netstrings of before too.
local function packed_event(id, etype, ts, fields)
  local item = {id, etype, ts}
  for i = 1, #fields do item[#item + 1] = fields[i] end
  local pack = msgpack_packer()
  if pack then
    for i = 4, #item do
      if type(item[i]) ~= 'string' then item[i] = tostring(item[i]) end
    end
    return pack(item)
  end
  return pack_strings(item)
end

-- An input event: buffered while a workflow task runs (so the task's replay sees
-- exactly what it saw live), else appended, scheduling a workflow task if none is due.
-- Pushes onto any run's buffer so far in this call: a completion that found its buffer
-- empty skips the LRANGE of flush_buffer when this has not moved since.
local buf_pushes = 0

local function buffer_push(c, item)
  buf_pushes = buf_pushes + 1
  redis.call('RPUSH', c.buf, pack_strings(item))
end

-- (c.wft_now: the caller read the hash's 'wft' on entry, and nothing changed it since.)
local function deliver(c, etype, ts, fields)
  local state = c.wft_now
  if state == nil then state = redis.call('HGET', c.wf, 'wft') end
  c.wft_now = nil
  if state == 'started' then
    local item = {etype, ts}
    for i = 1, #fields do item[#item + 1] = fields[i] end
    buffer_push(c, item)
  else
    local id = append(c, etype, ts, fields)
    if state == 'none' then schedule_wft(c, packed_event(id, etype, ts, fields)) end
  end
end

-- `empty_at` (optional): buf_pushes when the caller saw the buffer empty.
local function flush_buffer(c, empty_at)
  if empty_at and empty_at == buf_pushes then return 0 end
  local items = redis.call('LRANGE', c.buf, 0, -1)
  if #items == 0 then return 0 end
  redis.call('DEL', c.buf)
  for i = 1, #items do
    local parts = unpack_strings(items[i])
    local fields = {}
    for j = 3, #parts do fields[#fields + 1] = parts[j] end
    append(c, parts[1], parts[2], fields)
  end
  return #items
end

local function set_status(c, old, new, start)
  if old then redis.call('ZREM', key_index_status(c.prefix, old), c.id) end
  redis.call('ZADD', key_index_status(c.prefix, new), start, c.id)
  redis.call('HSET', c.wf, 'status', new)
end

-- Hooks later files of the library add to (engine/lua/85_handoff.lua): each
-- close_hooks[i](c, status, ts, run, got, names) runs first thing when a run closes (run:
-- its id; got: the close_fields of c.wf by name, false if unset; names: c.wf's field
-- names, all read once by close_run), each new_run_hooks[i](c, opts, fields) when a run
-- starts (fields: its started event's), and command_appliers[kind](c, f, ts) applies a
-- completion's command of that kind after its event is appended (f: the event's fields
-- by name).
local close_hooks, new_run_hooks, command_appliers = {}, {}, {}
local close_fields = {'status', 'start_time', 'run_id', 'cron_schedule'}

-- Close the run: status, close time, and no more work for it. Pending activity tasks
-- and timers are discarded when they come up (they check run id and status).
local function close_run(c, status, ts)
  -- One read for close_run and its hooks (they change none of these fields).
  local values = redis.call('HMGET', c.wf, unpack(close_fields))
  local got = {}
  for i = 1, #close_fields do got[close_fields[i]] = values[i] end
  local run = got.run_id or c.run
  local fields = redis.call('HKEYS', c.wf)
  for i = 1, #close_hooks do close_hooks[i](c, status, ts, run, got, fields) end
  set_status(c, got.status, status, got.start_time)
  redis.call('HSET', c.wf, 'close_time', ts, 'wft', 'none')
  redis.call('ZADD', key_index_close(c.prefix), ts, c.id)
  -- A cron run: a worker starts the chain's next run (15_run_chain.lua cron_due).
  if status ~= 'CONTINUED_AS_NEW' and got.cron_schedule then
    add_timer(c.timers, ts, timer_member('N', run, 0, 0, c.id))
  end
  redis.call('ZREM', c.timers, timer_member('X', run, 'run', 0, c.id),
    timer_member('X', run, 'execution', 0, c.id))
  -- Wakes every client waiting in handle.result() (one subscription per client). Sharded:
  -- on a cluster only the master of the shard's slot delivers it (engine/shard_pubsub.py).
  redis.call('SPUBLISH', key_closed_channel(c.prefix), c.id)
  for i = 1, #fields do
    local f = fields[i]
    if string.sub(f, 1, 6) == 'timer:' then
      redis.call('ZREM', c.timers, redis.call('HGET', c.wf, f))
      redis.call('HDEL', c.wf, f)
    elseif string.sub(f, 1, 3) == 'act' then  -- act:, actin:, acthb: (4 chars never matched)
      redis.call('HDEL', c.wf, f)
    end
  end
  redis.call('DEL', c.buf)
end

local function remove_from_indexes(c)
  local info = redis.call('HMGET', c.wf, 'status', 'type')
  if info[1] then redis.call('ZREM', key_index_status(c.prefix, info[1]), c.id) end
  if info[2] then redis.call('ZREM', key_index_type(c.prefix, info[2]), c.id) end
  redis.call('ZREM', key_index_start(c.prefix), c.id)
  redis.call('ZREM', key_index_close(c.prefix), c.id)
end

-- A new run in the workflow's keys (start, or continue-as-new). `opts` (optional) holds
-- the start options a run keeps: memo (payload, '' none), first_run and continued_run
-- (run ids of the chain), exec_ms / run_ms / task_ms (timeouts, 0 none) and exec_deadline
-- (the chain's execution deadline, kept across continue-as-new). The run and execution
-- timeouts are 'X' timers, removed when the run closes. Run chains (15_run_chain.lua):
-- retention_ms (how long its closed runs are kept), cron (the cron schedule) and
-- backoff_ms (the first workflow task waits that long: a cron run waits for its time).
local function new_run(c, run_id, wtype, tq, input, version, ts, opts)
  opts = opts or {}
  local exec_ms = tonumber(opts.exec_ms) or 0
  local run_ms = tonumber(opts.run_ms) or 0
  local task_ms = tonumber(opts.task_ms) or 0
  local first_run = opts.first_run or run_id
  local deadline = tonumber(opts.exec_deadline) or 0
  if deadline <= 0 and exec_ms > 0 then deadline = ts + exec_ms end
  redis.call('DEL', c.wf, c.hist, c.buf)
  redis.call('HSET', c.wf, 'workflow_id', c.id, 'run_id', run_id, 'type', wtype,
    'task_queue', tq, 'start_time', ts, 'next_event_id', 1, 'wft', 'none',
    'wft_epoch', 0, 'wft_token', 0, 'wft_attempt', 1, 'first_run_id', first_run)
  set_status(c, nil, 'RUNNING', ts)
  redis.call('ZADD', key_index_start(c.prefix), ts, c.id)
  redis.call('ZADD', key_index_type(c.prefix, wtype), ts, c.id)
  local fields = {'workflow_type', wtype, 'task_queue', tq,
    'input', input, 'run_id', run_id, 'attempt', 1, 'history_version', version,
    'first_execution_run_id', first_run}
  local function keep(name, value)
    fields[#fields + 1] = name
    fields[#fields + 1] = value
    redis.call('HSET', c.wf, name, value)
  end
  if opts.continued_run and opts.continued_run ~= '' then
    keep('continued_run_id', opts.continued_run)
  end
  if opts.memo and opts.memo ~= '' then keep('memo', opts.memo) end
  -- Only in the event: the caller indexes them (sa_apply, 05_visibility.lua).
  if opts.search_attributes and next(opts.search_attributes) then
    fields[#fields + 1] = 'search_attributes'
    fields[#fields + 1] = cjson.encode(opts.search_attributes)
  end
  if exec_ms > 0 then
    keep('execution_timeout_ms', exec_ms)
    redis.call('HSET', c.wf, 'execution_deadline', deadline)
    add_timer(c.timers, deadline, timer_member('X', run_id, 'execution', 0, c.id))
  end
  if run_ms > 0 then
    keep('run_timeout_ms', run_ms)
    add_timer(c.timers, ts + run_ms, timer_member('X', run_id, 'run', 0, c.id))
  end
  if task_ms > 0 then keep('task_timeout_ms', task_ms) end
  if opts.header and opts.header ~= '' then
    fields[#fields + 1] = 'header'
    fields[#fields + 1] = opts.header
  end
  if opts.retention_ms and opts.retention_ms ~= '' then
    redis.call('HSET', c.wf, 'run_retention_ms', opts.retention_ms)
  end
  if opts.cron and opts.cron ~= '' then keep('cron_schedule', opts.cron) end
  local backoff = tonumber(opts.backoff_ms) or 0
  if backoff > 0 then keep('first_workflow_task_backoff_ms', backoff) end
  for i = 1, #new_run_hooks do new_run_hooks[i](c, opts, fields) end
  append(c, 'WorkflowExecutionStarted', ts, fields)
  if backoff > 0 then
    -- The 'B' timer of epoch 0 schedules the first task; inputs meanwhile append.
    redis.call('HSET', c.wf, 'wft', 'backoff')
    add_timer(c.timers, ts + backoff, timer_member('B', run_id, 0, 0, c.id))
  else
    schedule_wft(c, packed_event(1, 'WorkflowExecutionStarted', ts, fields))
  end
end

-- {events so far, limit} of the run's history.
local function history_size(c)
  local h = c.h
  if not h then
    local info = redis.call('HMGET', c.wf, 'next_event_id', 'max_events')
    h = {next_event_id = info[1], max_events = info[2]}
  end
  -- (c.next_eid: the deferred counter, when there is one: ids_defer, 01_hot_read.lua)
  local next_id = c.next_eid or tonumber(h.next_event_id) or 1
  return next_id - 1, tonumber(h.max_events) or MAX_HISTORY_EVENTS
end

local function history_limit_message(events, limit)
  return 'history limit: the run has ' .. events .. ' events and may not go past ' ..
    limit .. '; a long-running workflow should call workflow.continue_as_new() ' ..
    'to carry its state into a fresh history'
end

local function is_current(c, run_id)
  local info = redis.call('HMGET', c.wf, 'run_id', 'status')
  return info[1] == run_id and info[2] == 'RUNNING'
end
