-- Search attributes and their indexes (engine/search_attributes.py, docs/visibility.md).
-- Named 05_ so that rd_start (10_client.lua) and rd_wft_complete (20_workflow_task.lua)
-- can call these local functions: the library is one chunk, in file name order.
--
-- A run's attributes live in its state hash as one JSON field, `search_attributes`:
-- {"Name": ["KEYWORD", "c-1"], "Tags": ["KEYWORD_LIST", ["a", "b"]], ...}, every scalar
-- as text, so nothing here re-encodes a number. The indexes, all in the run's shard:
--   index:sa                       set   "<name>:<TYPE>" pairs the shard has seen
--   index:sa:<name>:<TYPE>         zset  runs with the attribute; score: the value
--                                        (INT, DOUBLE, DATETIME ms) or start time (others)
--   index:sa:<name>:<TYPE>:<value> zset  KEYWORD / KEYWORD_LIST element / BOOL: runs with
--                                        that value, by start time

local SA_NUMERIC = {INT = true, DOUBLE = true, DATETIME = true}
local SA_BY_VALUE = {KEYWORD = true, KEYWORD_LIST = true, BOOL = true}
local SA_LIST = {KEYWORD_LIST = true}
local SA_TYPES = {TEXT = true, KEYWORD = true, INT = true, DOUBLE = true, BOOL = true,
  DATETIME = true, KEYWORD_LIST = true}

local function sa_index(c, name, item, start, add)
  local t, v = item[1], item[2]
  local all = key_sa_values(c.prefix, name, t)
  if add then
    redis.call('SADD', key_sa_types(c.prefix), name .. ':' .. t)
    redis.call('ZADD', all, SA_NUMERIC[t] and tonumber(v) or start, c.id)
  else
    redis.call('ZREM', all, c.id)
  end
  if SA_BY_VALUE[t] then
    local values = v
    if not SA_LIST[t] then values = {v} end
    for i = 1, #values do
      local key = key_sa_value(c.prefix, name, t, values[i])
      if add then
        redis.call('ZADD', key, start, c.id)
      else
        redis.call('ZREM', key, c.id)
      end
    end
  end
end

-- Decode and check a wire dict ('' or nil: none). Returns nil, attrs or an error text.
local function sa_check(json)
  if json == nil or json == '' then return nil, {} end
  local ok, attrs = pcall(cjson.decode, json)
  if not ok or type(attrs) ~= 'table' then return 'malformed search attributes' end
  for name, item in pairs(attrs) do
    if item ~= cjson.null then
      if type(item) ~= 'table' or not SA_TYPES[item[1]] or item[2] == nil then
        return 'malformed search attribute ' .. tostring(name)
      end
      if SA_NUMERIC[item[1]] and not tonumber(item[2]) then
        return 'search attribute ' .. name .. ' is not a number'
      end
      if SA_LIST[item[1]] and type(item[2]) ~= 'table' then
        return 'search attribute ' .. name .. ' is not a list'
      end
    end
  end
  return nil, attrs
end

local function sa_current(c)
  local raw = redis.call('HGET', c.wf, 'search_attributes')
  if not raw then return {} end
  return cjson.decode(raw)
end

-- Apply an upsert (a checked wire dict; null removes) to the run's attributes and the
-- shard's indexes.
local function sa_apply(c, attrs)
  if next(attrs) == nil then return end
  local current = sa_current(c)
  local start = redis.call('HGET', c.wf, 'start_time')
  for name, item in pairs(attrs) do
    if current[name] then sa_index(c, name, current[name], start, false) end
    if item == cjson.null then
      current[name] = nil
    else
      current[name] = item
      sa_index(c, name, item, start, true)
    end
  end
  if next(current) == nil then
    redis.call('HDEL', c.wf, 'search_attributes')
  else
    redis.call('HSET', c.wf, 'search_attributes', cjson.encode(current))
  end
end

-- Take the run's attributes out of the indexes before a new run reuses its keys;
-- returns them (continue-as-new carries them to the next run, as Temporal does).
local function sa_clear(c)
  local current = sa_current(c)
  local start = redis.call('HGET', c.wf, 'start_time')
  for name, item in pairs(current) do sa_index(c, name, item, start, false) end
  return current
end
