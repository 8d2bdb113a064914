--[[
  cell-apply.lib.lua: shared by cell-write-n.lua and entity-advance-n.lua (pasted in place of
  their `-- include: cell-apply.lib.lua` line by scripts/index.ts; not a script of its own).
  apply_cell(geoKey, seenKey, streamKey, c) applies one batch of operations to one ingest cell:
    c.x     packed pings, in order: XADD MAXLEN ~ maxlen (history, one entry each)
    c.rem   ids that left the cell: ZREM from the GEO set and the last-seen set
    c.geo   flat lon, lat, id triples: GEOADD (entity is live here)
    c.seen  flat rx, id pairs: ZADD to the last-seen set
  The writers send at most one add or one removal per entity and batch, so removals, then adds,
  go as variadic commands of at most CELL_CHUNK arguments (fewer calls per ping).
]]
local CELL_CHUNK = 3000 -- a multiple of 2 and 3: triples and pairs stay whole

local function call_chunked(cmd, key, list)
  for c = 1, #list, CELL_CHUNK do
    redis.call(cmd, key, unpack(list, c, math.min(c + CELL_CHUNK - 1, #list)))
  end
end

local function apply_cell(geoKey, seenKey, streamKey, c, maxlen, field)
  for _, p in ipairs(c.x) do
    redis.call('XADD', streamKey, 'MAXLEN', '~', maxlen, '*', field, p)
  end
  call_chunked('ZREM', geoKey, c.rem)
  call_chunked('ZREM', seenKey, c.rem)
  call_chunked('GEOADD', geoKey, c.geo)
  call_chunked('ZADD', seenKey, c.seen)
  return #c.x
end
