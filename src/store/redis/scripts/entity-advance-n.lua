--[[
  entity-advance-n.lua: decides, per ping, what it does to its entity's live state, for every
  entity of the call: on a single Redis all entities of a batch (and tenant); with cluster-safe
  scripts those of one key bucket (all KEYS share one hash tag, legal in Redis Cluster).
  On a single Redis the same call then writes the cells (history, GEO, last-seen, active cells:
  what cell-write-n.lua does in a second round trip with cluster-safe scripts), so a batch is
  durable after one round trip.
  KEYS[k]  entity hash k (fields ts seq lat lon cell rx p recent cts clat clon)
  ARGV[1]  ttl ms (entity state expiry, refreshed when live state advances)
  ARGV[2]  max plausible speed, m/s
  ARGV[3]  slack metres (GPS noise allowance before the speed check)
  ARGV[4]  the pings, one binary string (src/store/redis/batch-blob.ts): per key k in order, a
           uint16 count n and the entity id (uint8 length), then n records of length-prefixed
           strings ts, seq ('' if none), lat, lon, cell, rx (uint8 lengths), packed ping (uint16 length)
  ARGV[5]  'aof': the entity writes go to replicas and the AOF; anything else: to replicas only
           (redis.set_repl). Entity state is live state with a TTL, rebuilt by each entity's next
           ping; keeping it out of the AOF cuts the AOF to a third (fewer rewrites) and Redis CPU
           per ping by about a tenth. The pings themselves (cell writes: stream, GEO, seen) always
           go to the AOF.
  ARGV[6..14], only in the single-call form (every entity of the call has one tenant; the cell
           keys are built here, so this form is not legal in Redis Cluster):
           cell key head (`<prefix>c:{<tenant>:`), the GEO, last-seen and stream key tails
           (`}:geo` …), the active-cells key, the active-cell member head (`<tenant>|`), now ms
           (active-cell score), stream MAXLEN (approximate), stream field name.
  Returns one string: per key, `prevCell,prevLat,prevLon,d1d2..dn` (state before this call; ''
  when none), keys separated by ';', with d = 1 advanced live state, 2 older: history only,
  0 duplicate (dropped), 3 implausible jump. The cell writes follow from it: history (1 and 2)
  to the ping's cell stream, the latest advanced ping live in its cell, and a removal from
  prevCell when the entity advanced into another cell.
  Duplicate = same ts and seq as one of the entity's recent pings (the last ~12: a 256-byte ring).
  Implausible = (distance - slack) / max(|dt|, 1 s) above the limit, measured from the latest
  position; a flagged fix becomes a candidate and a next fix consistent with it re-anchors.
]]
-- include: cell-apply.lib.lua
if ARGV[5] ~= 'aof' then redis.set_repl(redis.REPL_REPLICA) end
local ttl = tonumber(ARGV[1])
local maxSpeed = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local blob = ARGV[4]
local unpack_ = struct.unpack
-- The cell step of the single-call form: per cell (in first-touched order) its operations.
local cells = nil
if ARGV[6] ~= nil then cells = { order = {}, by = {} } end
local function cell_ops(cell)
  local c = cells.by[cell]
  if c == nil then
    c = { x = {}, rem = {}, geo = {}, seen = {} }
    cells.by[cell] = c
    cells.order[#cells.order + 1] = cell
  end
  return c
end
local R = 6372797.560856
local rad = math.pi / 180
local function plausible(lat, lon, ts, alat, alon, ats)
  if alat == nil or ats == nil then return true end
  local dLat = (alat - lat) * rad
  local dLon = (alon - lon) * rad
  local a = math.sin(dLat / 2) ^ 2 + math.cos(lat * rad) * math.cos(alat * rad) * math.sin(dLon / 2) ^ 2
  if a > 1 then a = 1 end
  local d = 2 * R * math.asin(math.sqrt(a)) - slack
  local dt = math.abs(ts - ats) / 1000
  if dt < 1 then dt = 1 end
  return d <= maxSpeed * dt
end

local pos = 1
local function advance(key)
  local n, id
  n, id, pos = unpack_('<HBc0', blob, pos)
  local st = redis.call('HMGET', key, 'ts', 'seq', 'lat', 'lon', 'cell', 'recent', 'cts', 'clat', 'clon')
  local lts, lseq, llat, llon = tonumber(st[1]), tonumber(st[2]) or -1, tonumber(st[3]), tonumber(st[4])
  local lcell = st[5]
  local recent = st[6] or ''
  local cts, clat, clon = tonumber(st[7]), tonumber(st[8]), tonumber(st[9])
  local prefix = (lcell or '') .. ',' .. (st[3] or '') .. ',' .. (st[4] or '') .. ','
  local out = {}

  local advanced = false
  local aTs, aSeq, aLat, aLon, aCell, aRx, aP
  local candChanged = false
  local added = {}
  for i = 1, n do
    local tss, seqs, lats, lons, cell, rx, p
    tss, seqs, lats, lons, cell, rx, p, pos = unpack_('<Bc0Bc0Bc0Bc0Bc0Bc0Hc0', blob, pos)
    local ts = tonumber(tss)
    local seq = tonumber(seqs) or -1
    local newer = lts == nil or ts > lts or (ts == lts and seq > lseq)
    local dup = false
    if not newer then
      -- Only a ping that is not newer than the latest can repeat a recent one.
      if #added > 0 then recent = recent .. ' ' .. table.concat(added, ' '); added = {} end
      dup = string.find(recent .. ' ', ' ' .. tss .. ':' .. seqs .. ' ', 1, true) ~= nil
    end
    if dup then
      out[i] = '0'
    else
      local lat, lon = tonumber(lats), tonumber(lons)
      local ok = plausible(lat, lon, ts, llat, llon, lts)
      if not ok and cts ~= nil and ts > cts and plausible(lat, lon, ts, clat, clon, cts) then ok = true end
      if not ok then
        cts, clat, clon = ts, lat, lon
        candChanged = true
        out[i] = '3'
      else
        added[#added + 1] = tss .. ':' .. seqs
        if cells then local x = cell_ops(cell).x; x[#x + 1] = p end
        if newer then
          lts, lseq, llat, llon, lcell = ts, seq, lat, lon, cell
          aTs, aSeq, aLat, aLon, aCell, aRx, aP = tss, seqs, lats, lons, cell, rx, p
          advanced = true
          if cts ~= nil then cts, clat, clon = nil, nil, nil; candChanged = true end
          out[i] = '1'
        else
          out[i] = '2'
        end
      end
    end
  end
  if #added > 0 then recent = recent .. ' ' .. table.concat(added, ' ') end
  if #recent > 256 then
    local cut = string.find(recent, ' ', #recent - 256, true)
    recent = string.sub(recent, cut)
  end

  if advanced then
    redis.call('HSET', key, 'ts', aTs, 'seq', aSeq, 'lat', aLat, 'lon', aLon, 'cell', aCell, 'rx', aRx, 'p', aP, 'recent', recent)
    redis.call('PEXPIRE', key, ttl)
  elseif #added > 0 and redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'recent', recent)
  end
  if candChanged then
    if cts ~= nil then
      redis.call('HSET', key, 'cts', cts, 'clat', tostring(clat), 'clon', tostring(clon))
      if not advanced and redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ttl) end
    else
      redis.call('HDEL', key, 'cts', 'clat', 'clon')
    end
  end
  if cells and advanced then
    local c = cell_ops(aCell)
    local g, sn = c.geo, c.seen
    g[#g + 1] = aLon; g[#g + 1] = aLat; g[#g + 1] = id
    sn[#sn + 1] = aRx; sn[#sn + 1] = id
    local prevCell = st[5]
    if prevCell and prevCell ~= '' and prevCell ~= aCell then
      local r = cell_ops(prevCell).rem
      r[#r + 1] = id
    end
  end
  return prefix .. table.concat(out)
end

local results = {}
for k = 1, #KEYS do
  results[k] = advance(KEYS[k])
end
if cells then
  redis.set_repl(redis.REPL_ALL)
  local head, geoTail, seenTail, streamTail = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  local activeKey, memberHead, now, maxlen, field = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
  local active = {}
  for _, cell in ipairs(cells.order) do
    apply_cell(head .. cell .. geoTail, head .. cell .. seenTail, head .. cell .. streamTail, cells.by[cell], maxlen, field)
    active[#active + 1] = now; active[#active + 1] = memberHead .. cell
  end
  call_chunked('ZADD', activeKey, active)
end
return table.concat(results, ';')
