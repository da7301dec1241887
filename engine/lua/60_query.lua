-- Reads for queries. A query must see every input accepted before it, also the ones a
-- running workflow task has not applied yet (appended after the last activation, or
-- buffered while the task runs).

-- rd_query_inputs: the history after a stream entry and the buffered events, read
-- together: read apart, a completion between the two reads moves buffered events into
-- the history behind the first read, and the query misses them.
-- KEYS: history, buffer
-- ARGV: after_stream_id ('' = the whole history)
-- Returns {entries, buffered} (buffered: netstrings of type, ts, field, value...).
redis.register_function{function_name = 'rd_query_inputs', flags = {'no-writes'},
  callback = function(keys, args)
  local moving = slot_moving(keys); if moving then return moving end
    local from = '-'
    if args[1] ~= '' then from = '(' .. args[1] end
    return {redis.call('XRANGE', keys[1], from, '+'), redis.call('LRANGE', keys[2], 0, -1)}
  end}
