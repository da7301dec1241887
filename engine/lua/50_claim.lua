-- Task delivery housekeeping: claiming from dead consumers, dead letters, hand-back.

-- rd_claim: claim entries idle longer than min_idle_ms (their worker stopped touching
-- them: it is dead). Entries delivered more than max_deliveries times go to the
-- dead-letter stream instead, with the reason.
-- KEYS: task stream, dead-letter stream
-- ARGV: consumer, min_idle_ms, cursor, count, max_deliveries
-- Returns {next_cursor, {entries claimed}, dead_lettered_count}.
redis.register_function('rd_claim', function(keys, args)
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
  local entries = redis.call('XRANGE', keys[1], args[1], args[1])
  ack(keys[1], args[1])
  if #entries == 0 then return 0 end
  local cmd = {'XADD', keys[1], '*'}
  for _, v in ipairs(entries[1][2]) do cmd[#cmd + 1] = v end
  redis.call(unpack(cmd))
  return 1
end)

-- rd_dlq_requeue: put a dead-lettered task back on its stream.
-- KEYS: dead-letter stream, task stream (the entry's "stream" field)
-- ARGV: dead-letter entry id
-- Returns 1 when requeued, 0 when not found.
redis.register_function('rd_dlq_requeue', function(keys, args)
  local entries = redis.call('XRANGE', keys[1], args[1], args[1])
  if #entries == 0 then return 0 end
  local fields = entries[1][2]
  local cmd = {'XADD', keys[2], '*'}
  local skip = {stream = true, message_id = true, deliveries = true, reason = true}
  for i = 1, #fields, 2 do
    if not skip[fields[i]] then
      cmd[#cmd + 1] = fields[i]
      cmd[#cmd + 1] = fields[i + 1]
    end
  end
  redis.call(unpack(cmd))
  redis.call('XDEL', keys[1], args[1])
  return 1
end)
