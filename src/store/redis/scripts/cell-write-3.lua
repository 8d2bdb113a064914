--[[
  cell-write-3.lua: applies one batch of operations to one ingest cell (one hash tag).
  KEYS[1] GEO set, KEYS[2] last-seen sorted set (score = server receive ms), KEYS[3] stream
  ARGV[1] stream MAXLEN (approximate), ARGV[2] stream field name, then operations in order:
    'A', id, lon, lat, rx   entity is live here: GEOADD + ZADD seen
    'R', id                 entity left this cell: ZREM from GEO and seen
    'X', packed             history: XADD MAXLEN ~
  Returns the number of stream entries added.
]]
local maxlen = ARGV[1]
local field = ARGV[2]
local i, added = 3, 0
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'A' then
    redis.call('GEOADD', KEYS[1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 1])
    redis.call('ZADD', KEYS[2], ARGV[i + 4], ARGV[i + 1])
    i = i + 5
  elseif op == 'R' then
    redis.call('ZREM', KEYS[1], ARGV[i + 1])
    redis.call('ZREM', KEYS[2], ARGV[i + 1])
    i = i + 2
  elseif op == 'X' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', field, ARGV[i + 1])
    added = added + 1
    i = i + 2
  else
    return redis.error_reply('cell-write: unknown op ' .. tostring(op))
  end
end
return added
