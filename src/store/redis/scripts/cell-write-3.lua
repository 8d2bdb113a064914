--[[
  cell-write-3.lua: applies one batch of operations to one ingest cell (one hash tag).
  KEYS[1] GEO set, KEYS[2] last-seen sorted set (score = server receive ms), KEYS[3] stream
  ARGV[1] stream MAXLEN (approximate), ARGV[2] stream field name, then operations:
    'A', id, lon, lat, rx   entity is live here: GEOADD + ZADD seen
    'R', id                 entity left this cell: ZREM from GEO and seen
    'X', packed             history: XADD MAXLEN ~ (in the given order)
  The writer sends at most one 'A' or one 'R' per entity and batch, so removals, then adds,
  are applied as variadic commands (fewer calls per ping). Returns the stream entries added.
]]
local maxlen = ARGV[1]
local field = ARGV[2]
local i, added = 3, 0
local n = #ARGV
local geo, seen, rem = {}, {}, {}
while i <= n do
  local op = ARGV[i]
  if op == 'A' then
    geo[#geo + 1] = ARGV[i + 2]; geo[#geo + 1] = ARGV[i + 3]; geo[#geo + 1] = ARGV[i + 1]
    seen[#seen + 1] = ARGV[i + 4]; seen[#seen + 1] = ARGV[i + 1]
    i = i + 5
  elseif op == 'R' then
    rem[#rem + 1] = ARGV[i + 1]
    i = i + 2
  elseif op == 'X' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', field, ARGV[i + 1])
    added = added + 1
    i = i + 2
  else
    return redis.error_reply('cell-write: unknown op ' .. tostring(op))
  end
end
local CHUNK = 3000
for c = 1, #rem, CHUNK do
  local part = { unpack(rem, c, math.min(c + CHUNK - 1, #rem)) }
  redis.call('ZREM', KEYS[1], unpack(part))
  redis.call('ZREM', KEYS[2], unpack(part))
end
for c = 1, #geo, CHUNK do
  redis.call('GEOADD', KEYS[1], unpack(geo, c, math.min(c + CHUNK - 1, #geo)))
end
for c = 1, #seen, CHUNK do -- CHUNK is a multiple of 2 and 3: triples and pairs stay whole
  redis.call('ZADD', KEYS[2], unpack(seen, c, math.min(c + CHUNK - 1, #seen)))
end
return added
