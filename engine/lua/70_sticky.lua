-- Sticky routing's housekeeping (docs/design-notes.md "Sticky workflows"); the routing
-- itself is schedule_wft's (00_common.lua), and the 'K' timer's (40_timers.lua).

-- rd_sticky_release: a worker's sticky stream of one shard goes away (the worker stops,
-- or live workers saw it die): each task on it that is still due moves to the shared
-- stream, for any worker, and the stream with its consumer group is deleted, so nothing
-- is routed to it any more (schedule_wft checks that the stream exists).
-- KEYS: the sticky stream
-- ARGV: shard prefix, task queue, sticky name
-- Returns the number of tasks moved.
redis.register_function('rd_sticky_release', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  local prefix, name = args[1], args[3]
  local shared = key_workflow_tasks(prefix, args[2])
  local moved = 0
  for _, entry in ipairs(redis.call('XRANGE', keys[1], '-', '+')) do
    local fields, f = entry[2], {}
    for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
    if f.workflow_id and f.run_id and f.epoch then
      local c = ctx_of(prefix, f.workflow_id)
      local info = redis.call('HMGET', c.wf, 'run_id', 'status', 'wft', 'wft_epoch', 'sticky')
      if info[5] == name then redis.call('HDEL', c.wf, 'sticky', 'sticky_ms') end
      -- Started too: by the owner, which is gone (a stopping worker commits first).
      if info[1] == f.run_id and info[2] == 'RUNNING' and info[4] == f.epoch and
          (info[3] == 'scheduled' or info[3] == 'started') then
        local cmd = {'XADD', shared, '*'}
        for i = 1, #fields do cmd[#cmd + 1] = fields[i] end
        redis.call(unpack(cmd))
        redis.call('ZREM', key_sticky_timers(prefix),
          timer_member('K', f.run_id, f.epoch, 0, f.workflow_id))
        moved = moved + 1
      end
    end
  end
  redis.call('DEL', keys[1])
  return moved
end)

-- rd_unstick: the owner let the workflow go from its cache (to make room): its next
-- task goes to any worker, which replays it, instead of to the owner, which would.
-- KEYS: the workflow's state hash
-- ARGV: sticky name of the worker letting go
-- Returns 1 when it owned the workflow, else 0.
redis.register_function('rd_unstick', function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
  if redis.call('HGET', keys[1], 'sticky') ~= args[1] then return 0 end
  redis.call('HDEL', keys[1], 'sticky', 'sticky_ms')
  return 1
end)
