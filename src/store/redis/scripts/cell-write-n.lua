--[[
  cell-write-n.lua: applies one batch of operations to each of n ingest cells.
  KEYS[3i-2..3i] cell i: GEO set, last-seen sorted set (score = server receive ms), stream
  ARGV[1] stream MAXLEN (approximate), ARGV[2] stream field name, ARGV[2+i] the operations on
  cell i, one binary string (src/store/redis/batch-blob.ts), each a one-byte op then
  length-prefixed strings:
    'A' id, lon, lat, rx (uint8 lengths)   entity is live here: GEOADD + ZADD seen
    'R' id (uint8 length)                  entity left this cell: ZREM from GEO and seen
    'X' packed (uint16 length)             history: XADD MAXLEN ~ (in the given order)
  The writer sends at most one 'A' or one 'R' per entity and batch, so removals, then adds,
  are applied as variadic commands (fewer calls per ping). Returns the stream entries added.
  In Redis Cluster every cell is its own hash tag: the writer then calls this with one cell.
]]
local maxlen = ARGV[1]
local field = ARGV[2]
local unpack_ = struct.unpack
local CHUNK = 3000
local added = 0

local function apply(geoKey, seenKey, streamKey, blob)
  local pos, n = 1, #blob
  local geo, seen, rem = {}, {}, {}
  while pos <= n do
    local op
    op, pos = unpack_('B', blob, pos)
    if op == 88 then -- 'X'
      local p
      p, pos = unpack_('<Hc0', blob, pos)
      redis.call('XADD', streamKey, 'MAXLEN', '~', maxlen, '*', field, p)
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
      error('cell-write: unknown op ' .. tostring(op))
    end
  end
  for c = 1, #rem, CHUNK do
    local part = { unpack(rem, c, math.min(c + CHUNK - 1, #rem)) }
    redis.call('ZREM', geoKey, unpack(part))
    redis.call('ZREM', seenKey, unpack(part))
  end
  for c = 1, #geo, CHUNK do
    redis.call('GEOADD', geoKey, unpack(geo, c, math.min(c + CHUNK - 1, #geo)))
  end
  for c = 1, #seen, CHUNK do -- CHUNK is a multiple of 2 and 3: triples and pairs stay whole
    redis.call('ZADD', seenKey, unpack(seen, c, math.min(c + CHUNK - 1, #seen)))
  end
end

for i = 1, #KEYS / 3 do
  apply(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[2 + i])
end
return added
