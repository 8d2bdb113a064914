--[[
  entity-advance-n.lua: decides, per ping, what it does to its entity's live state, for every
  entity of the call: on a single Redis all entities of a batch (and tenant); with cluster-safe
  scripts those of one key bucket (all KEYS share one hash tag, legal in Redis Cluster).
  KEYS[k]  entity hash k (fields ts seq lat lon cell rx p recent cts clat clon)
  ARGV[1]  ttl ms (entity state expiry, refreshed when live state advances)
  ARGV[2]  max plausible speed, m/s
  ARGV[3]  slack metres (GPS noise allowance before the speed check)
  ARGV[4]  the pings, one binary string (src/store/redis/batch-blob.ts): per key k in order, a
           uint16 count n, then n records of length-prefixed strings
           ts, seq ('' if none), lat, lon, cell, rx (uint8 lengths), packed ping (uint16 length)
  ARGV[5]  'aof': the entity writes go to replicas and the AOF; anything else: to replicas only
           (redis.set_repl). Entity state is live state with a TTL, rebuilt by each entity's next
           ping; keeping it out of the AOF cuts the AOF to a third (fewer rewrites) and Redis CPU
           per ping by about a tenth. The pings themselves (cell-write: stream, GEO, seen) always
           go to the AOF.
  Returns one string: per key, `prevCell,prevLat,prevLon,d1d2..dn` (state before this call; ''
  when none), keys separated by ';', with d = 1 advanced live state, 2 older: history only,
  0 duplicate (dropped), 3 implausible jump.
  Duplicate = same ts and seq as one of the entity's recent pings (the last ~12: a 256-byte ring).
  Implausible = (distance - slack) / max(|dt|, 1 s) above the limit, measured from the latest
  position; a flagged fix becomes a candidate and a next fix consistent with it re-anchors.
]]
if ARGV[5] ~= 'aof' then redis.set_repl(redis.REPL_REPLICA) end
local ttl = tonumber(ARGV[1])
local maxSpeed = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local blob = ARGV[4]
local unpack_ = struct.unpack
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
  local n
  n, pos = unpack_('<H', blob, pos)
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
  return prefix .. table.concat(out)
end

local results = {}
for k = 1, #KEYS do
  results[k] = advance(KEYS[k])
end
return table.concat(results, ';')
