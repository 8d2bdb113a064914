--[[
  cell-write-n.lua: applies one batch of operations to each of n ingest cells (the second step
  of a write with cluster-safe scripts; on a single Redis, entity-advance-n.lua does it in the
  same call).
  KEYS[3i-2..3i] cell i: GEO set, last-seen sorted set (score = server receive ms), stream
  ARGV[1] stream MAXLEN (approximate), ARGV[2] stream field name, ARGV[2+i] the operations on
  cell i, one binary string (src/store/redis/batch-blob.ts), each a one-byte op then
  length-prefixed strings:
    'A' id, lon, lat, rx (uint8 lengths)   entity is live here: GEOADD + ZADD seen
    'R' id (uint8 length)                  entity left this cell: ZREM from GEO and seen
    'X' packed (uint16 length)             history: XADD MAXLEN ~ (in the given order)
  Returns the stream entries added.
  In Redis Cluster every cell is its own hash tag: the writer then calls this with one cell.
]]
-- include: cell-apply.lib.lua
local maxlen = ARGV[1]
local field = ARGV[2]
local unpack_ = struct.unpack
local added = 0

local function decode(blob)
  local pos, n = 1, #blob
  local c = { x = {}, rem = {}, geo = {}, seen = {} }
  while pos <= n do
    local op
    op, pos = unpack_('B', blob, pos)
    if op == 88 then -- 'X'
      local p
      p, pos = unpack_('<Hc0', blob, pos)
      c.x[#c.x + 1] = p
    elseif op == 65 then -- 'A'
      local id, lon, lat, rx
      id, lon, lat, rx, pos = unpack_('Bc0Bc0Bc0Bc0', blob, pos)
      c.geo[#c.geo + 1] = lon; c.geo[#c.geo + 1] = lat; c.geo[#c.geo + 1] = id
      c.seen[#c.seen + 1] = rx; c.seen[#c.seen + 1] = id
    elseif op == 82 then -- 'R'
      local id
      id, pos = unpack_('Bc0', blob, pos)
      c.rem[#c.rem + 1] = id
    else
      error('cell-write: unknown op ' .. tostring(op))
    end
  end
  return c
end

for i = 1, #KEYS / 3 do
  added = added + apply_cell(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], decode(ARGV[2 + i]), maxlen, field)
end
return added
