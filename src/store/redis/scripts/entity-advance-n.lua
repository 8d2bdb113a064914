--[[
  entity-advance-n.lua: decides, per ping, what it does to its entity's live state, for every
  entity of one key bucket (all KEYS share one hash tag, so the call is legal in Redis Cluster).
  KEYS[k]  entity hash k (fields ts seq lat lon cell rx p recent cts clat clon)
  ARGV[1]  ttl ms (entity state expiry, refreshed when live state advances)
  ARGV[2]  max plausible speed, m/s
  ARGV[3]  slack metres (GPS noise allowance before the speed check)
  then per key k: n, then n groups of 7: ts, seq ('' if none), lat, lon, cell, rx, packed ping
  Returns per key { prevCell, prevLat, prevLon, d1 .. dn } (state before this call; '' when none) with
  d = 1 advanced live state, 2 older: history only, 0 duplicate (dropped), 3 implausible jump.
  Duplicate = same ts and seq as one of the entity's recent pings (the last ~12: a 256-byte ring).
  Implausible = (distance - slack) / max(|dt|, 1 s) above the limit, measured from the latest
  position; a flagged fix becomes a candidate and a next fix consistent with it re-anchors.
]]
local ttl = tonumber(ARGV[1])
local maxSpeed = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
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

local function advance(key, base, n)
local st = redis.call('HMGET', key, 'ts', 'seq', 'lat', 'lon', 'cell', 'recent', 'cts', 'clat', 'clon')
local lts, lseq, llat, llon = tonumber(st[1]), tonumber(st[2]) or -1, tonumber(st[3]), tonumber(st[4])
local lcell = st[5]
local recent = st[6] or ''
local cts, clat, clon = tonumber(st[7]), tonumber(st[8]), tonumber(st[9])
local out = { lcell or '', st[3] or '', st[4] or '' }

local advanced, advB = false, nil
local candChanged = false
local added = {}
for i = 0, n - 1 do
  local b = base + i * 7
  local ts = tonumber(ARGV[b])
  local seqs = ARGV[b + 1]
  local seq = tonumber(seqs) or -1
  local newer = lts == nil or ts > lts or (ts == lts and seq > lseq)
  local dup = false
  if not newer then
    -- Only a ping that is not newer than the latest can repeat a recent one.
    if #added > 0 then recent = recent .. ' ' .. table.concat(added, ' '); added = {} end
    dup = string.find(recent .. ' ', ' ' .. ARGV[b] .. ':' .. seqs .. ' ', 1, true) ~= nil
  end
  if dup then
    out[#out + 1] = 0
  else
    local lat, lon = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
    local ok = plausible(lat, lon, ts, llat, llon, lts)
    if not ok and cts ~= nil and ts > cts and plausible(lat, lon, ts, clat, clon, cts) then ok = true end
    if not ok then
      cts, clat, clon = ts, lat, lon
      candChanged = true
      out[#out + 1] = 3
    else
      added[#added + 1] = ARGV[b] .. ':' .. seqs
      if newer then
        lts, lseq, llat, llon, lcell = ts, seq, lat, lon, ARGV[b + 4]
        advB = b
        advanced = true
        if cts ~= nil then cts, clat, clon = nil, nil, nil; candChanged = true end
        out[#out + 1] = 1
      else
        out[#out + 1] = 2
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
  local b = advB
  redis.call('HSET', key, 'ts', ARGV[b], 'seq', ARGV[b + 1], 'lat', ARGV[b + 2], 'lon', ARGV[b + 3], 'cell', ARGV[b + 4],
    'rx', ARGV[b + 5], 'p', ARGV[b + 6], 'recent', recent)
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
return out
end

local results = {}
local a = 4
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  results[k] = advance(KEYS[k], a + 1, n)
  a = a + 1 + n * 7
end
return results
