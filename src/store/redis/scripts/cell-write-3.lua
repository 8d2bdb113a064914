--[[
  cell-write-3.lua: applies one batch of operations to one ingest cell (one hash tag).
  KEYS[1] GEO set, KEYS[2] last-seen sorted set (score = server receive ms), KEYS[3] stream
  ARGV[1] stream MAXLEN (approximate), ARGV[2] stream field name, ARGV[3] the operations, one
  binary string (src/store/redis/batch-blob.ts), each a one-byte op then length-prefixed strings:
    'A' id, lon, lat, rx (uint8 lengths)   entity is live here: GEOADD + ZADD seen
    'R' id (uint8 length)                  entity left this cell: ZREM from GEO and seen
    'X' packed (uint16 length)             history: XADD MAXLEN ~ (in the given order)
  The writer sends at most one 'A' or one 'R' per entity and batch, so removals, then adds,
  are applied as variadic commands (fewer calls per ping). Returns the stream entries added.
]]
local maxlen = ARGV[1]
local field = ARGV[2]
local blob = ARGV[3]
local unpack_ = struct.unpack
local pos, n = 1, #blob
local added = 0
local geo, seen, rem = {}, {}, {}
while pos <= n do
  local op
  op, pos = unpack_('B', blob, pos)
  if op == 88 then -- 'X'
    local p
    p, pos = unpack_('<Hc0', blob, pos)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', field, p)
    added = added + 1
  elseif op == 65 then -- 'A'
    local id, lon, lat, rx
    id, lon, lat, rx, pos = unpack_('Bc0Bc0Bc0Bc0', blob, pos)
    geo[#geo + 1] = lon; geo[#geo + 1] = lat; geo[#geo + 1] = id
    seen[#seen + 1] = rx; seen[#seen + 1] = id
  elseif op == 82 then -- 'R'
    local id
    id, pos = unpack_('Bc0', blob, pos)
    rem[#rem + 1] = id
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
