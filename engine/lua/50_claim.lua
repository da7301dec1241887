-- Task delivery housekeeping: claiming from dead consumers, dead letters, hand-back.

-- Move an entry delivered `deliveries` times without completing to the dead letters.
local function dead_letter_over_delivered(keys, id, deliveries)
  local entries = redis.call('XRANGE', keys[1], id, id)
  if entries[1] then
    local cmd = {'XADD', keys[2], '*', 'stream', keys[1], 'message_id', id,
      'deliveries', deliveries, 'reason',
      'delivered ' .. deliveries .. ' times without completing (worker crashed each time?)'}
    for j = 1, #entries[1][2] do cmd[#cmd + 1] = entries[1][2][j] end
    redis.call(unpack(cmd))
  end
  ack(keys[1], id)
end

-- XCLAIM one entry for `consumer` into `claimed`; 1 when claimed.
local function claim_one(keys, consumer, min_idle, id, claimed)
  local got = redis.call('XCLAIM', keys[1], GROUP, consumer, min_idle, id)
  if got[1] then
    claimed[#claimed + 1] = got[1]
    return 1
  end
  ack(keys[1], id)  -- the entry was deleted (trimmed): nothing left to run
  return 0
end

-- Claim up to `room` of the suspects `ids` into `claimed` (their ids into `suspects`),
-- and only into empty hands: a suspect claimed with other entries has its delivery
-- counted at once, and if one of those is what kills workers (delivered once so far,
-- not a suspect yet) the suspect goes down with it once more, towards the dead letters.
-- Returns 1 when suspects were left (pending where they are, for later or another
-- claimer), else 0.
local function claim_suspects(keys, consumer, min_idle, ids, room, claimed, suspects)
  for _, id in ipairs(ids) do
    if room <= 0 or #claimed > #suspects then return 1 end
    if claim_one(keys, consumer, min_idle, id, claimed) == 1 then
      suspects[#suspects + 1] = id
      room = room - 1
    end
  end
  return 0
end

-- rd_claim with max_suspects. XAUTOCLAIM would claim (and count a delivery of) every
-- idle entry at once: a crashing task and the healthy ones that went down with it were
-- started together again and again, and dead-lettered together. Idle entries are
-- listed first (XPENDING IDLE) and claimed one by one, as rd_claim_from does.
local function claim_idle_suspects_apart(keys, args)
  local count = tonumber(args[4])
  local max_deliveries = tonumber(args[5])
  local suspects_left = tonumber(args[6])
  local pending = redis.call('XPENDING', keys[1], GROUP, 'IDLE', args[2], args[3], '+',
    count)
  local claimed, dead, suspects, later = {}, 0, {}, {}
  for _, p in ipairs(pending) do
    local id, deliveries = p[1], tonumber(p[4])
    -- XCLAIM counts this delivery too.
    if deliveries + 1 > max_deliveries then
      dead_letter_over_delivered(keys, id, deliveries)
      dead = dead + 1
    elseif deliveries > 1 then
      later[#later + 1] = id
    else
      claim_one(keys, args[1], args[2], id, claimed)
    end
  end
  claim_suspects(keys, args[1], args[2], later, suspects_left, claimed, suspects)
  local cursor = '0-0'
  if #pending == count then
    local ms, seq = string.match(pending[#pending][1], '^(%d+)-(%d+)$')
    cursor = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
  end
  return {cursor, claimed, dead, suspects}
end

-- rd_claim: claim entries idle longer than min_idle_ms (their worker stopped touching
-- them: it is dead). Entries delivered more than max_deliveries times go to the
-- dead-letter stream instead, with the reason.
-- KEYS: task stream, dead-letter stream
-- ARGV: consumer, min_idle_ms, cursor, count, max_deliveries
-- Returns {next_cursor, {entries claimed}, dead_lettered_count}.
-- With ARGV[6], max_suspects: suspects (see rd_claim_from) are taken at most that many
-- at a time and the others left pending where they are, as rd_claim_from does; returns
-- {next_cursor, {entries claimed}, dead_lettered_count, {suspect entry ids}}.
redis.register_function('rd_claim', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if args[6] then return claim_idle_suspects_apart(keys, args) end
  local res = redis.call('XAUTOCLAIM', keys[1], GROUP, args[1], args[2], args[3],
    'COUNT', args[4])
  local claimed, dead = {}, 0
  local max_deliveries = tonumber(args[5])
  for _, entry in ipairs(res[2]) do
    local id, fields = entry[1], entry[2]
    local pending = redis.call('XPENDING', keys[1], GROUP, id, id, 1)
    local deliveries = 0
    if pending[1] then deliveries = tonumber(pending[1][4]) end
    if deliveries > max_deliveries then
      local cmd = {'XADD', keys[2], '*', 'stream', keys[1], 'message_id', id,
        'deliveries', deliveries, 'reason',
        'delivered ' .. deliveries .. ' times without completing (worker crashed each time?)'}
      for j = 1, #fields do cmd[#cmd + 1] = fields[j] end
      redis.call(unpack(cmd))
      ack(keys[1], id)
      dead = dead + 1
    else
      claimed[#claimed + 1] = entry
    end
  end
  return {res[1], claimed, dead}
end)

-- rd_release: hand a task back to the queue (graceful shutdown) as a fresh entry.
-- KEYS: task stream
-- ARGV: msg_id
-- Returns 1 when requeued, 0 when the entry was gone.
redis.register_function('rd_release', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local entries = redis.call('XRANGE', keys[1], args[1], args[1])
  ack(keys[1], args[1])
  if #entries == 0 then return 0 end
  local cmd = {'XADD', keys[1], '*'}
  for _, v in ipairs(entries[1][2]) do cmd[#cmd + 1] = v end
  redis.call(unpack(cmd))
  return 1
end)

-- rd_dead_letter: move one delivered entry to the dead letters at once (it cannot be
-- processed at all: a malformed task entry), with the reason.
-- KEYS: task stream, dead-letter stream
-- ARGV: msg_id, reason
-- Returns 1 when moved, 0 when the entry was gone.
redis.register_function('rd_dead_letter', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local entries = redis.call('XRANGE', keys[1], args[1], args[1])
  ack(keys[1], args[1])
  if #entries == 0 then return 0 end
  local cmd = {'XADD', keys[2], '*', 'stream', keys[1], 'message_id', args[1],
    'deliveries', 1, 'reason', args[2]}
  for _, v in ipairs(entries[1][2]) do cmd[#cmd + 1] = v end
  redis.call(unpack(cmd))
  return 1
end)

-- rd_dlq_requeue: put a dead-lettered task back on its stream. A workflow task that
-- was dead-lettered as poison (rd_wft_fail) left its run with no task due: the run is
-- made to expect it again, with a fresh attempt count.
-- KEYS: dead-letter stream, task stream (the entry's "stream" field)[, state hash of the
--       entry's workflow: given for a workflow task whose workflow is in this shard]
-- ARGV: dead-letter entry id
-- Returns 1 when requeued, 0 when not found.
redis.register_function('rd_dlq_requeue', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local entries = redis.call('XRANGE', keys[1], args[1], args[1])
  if #entries == 0 then return 0 end
  local fields = entries[1][2]
  local cmd = {'XADD', keys[2], '*'}
  local skip = {stream = true, message_id = true, deliveries = true, reason = true}
  local f = {}
  for i = 1, #fields, 2 do
    f[fields[i]] = fields[i + 1]
    if not skip[fields[i]] then
      cmd[#cmd + 1] = fields[i]
      cmd[#cmd + 1] = fields[i + 1]
    end
  end
  if #cmd == 3 then return redis.error_reply('ERR dead letter has no task fields') end
  if keys[3] and f.epoch then
    local info = redis.call('HMGET', keys[3], 'wft', 'run_id', 'wft_epoch')
    if info[1] == 'dead' and info[2] == f.run_id and info[3] == f.epoch then
      redis.call('HSET', keys[3], 'wft', 'scheduled', 'wft_attempt', 1)
    end
  end
  redis.call(unpack(cmd))
  redis.call('XDEL', keys[1], args[1])
  return 1
end)

-- rd_claim_from: take over every pending entry of one consumer known to be dead (its
-- presence subscription is gone), without waiting for the entries to go idle. Entries
-- delivered more than max_deliveries times go to the dead-letter stream, as in rd_claim.
-- Suspects, entries that were already delivered more than once (they went down with a
-- worker before: maybe they are what kills workers), are taken at most max_suspects at
-- a time, and only when no other entry is claimed (claim_suspects), and left pending on
-- the dead consumer otherwise: a claimer runs them one at a time, so that healthy tasks
-- stop going down with a poison one, delivery after delivery, into the dead letters.
-- KEYS: task stream, dead-letter stream
-- ARGV: dead consumer, new consumer, count, max_deliveries, [max_suspects] (default: all)
-- Returns {{entries claimed}, dead_lettered_count, more, {suspect entry ids}} (more = 1
-- when count was hit or suspects were left).
redis.register_function('rd_claim_from', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local count = tonumber(args[3])
  local pending = redis.call('XPENDING', keys[1], GROUP, '-', '+', count, args[1])
  local max_deliveries = tonumber(args[4])
  local limited = args[5] ~= nil
  local suspects_left = tonumber(args[5]) or count
  local claimed, dead, suspects, more, later = {}, 0, {}, 0, {}
  for _, p in ipairs(pending) do
    local id, deliveries = p[1], tonumber(p[4])
    -- XCLAIM counts this delivery too, as XAUTOCLAIM does in rd_claim.
    if deliveries + 1 > max_deliveries then
      dead_letter_over_delivered(keys, id, deliveries)
      dead = dead + 1
    elseif deliveries > 1 and limited then
      later[#later + 1] = id
    else
      if claim_one(keys, args[2], 0, id, claimed) == 1 and deliveries > 1 then
        suspects[#suspects + 1] = id
      end
    end
  end
  more = claim_suspects(keys, args[2], 0, later, suspects_left, claimed, suspects)
  if #pending == count then more = 1 end
  return {claimed, dead, more, suspects}
end)
