--[[
  cell-live-2.lua: live members of one cell, stale ones (silent longer than the TTL) left out.
  KEYS[1] GEO set, KEYS[2] last-seen sorted set
  ARGV[1] cutoff ms, ARGV[2] mode: 'radius' (ARGV[3] lon, ARGV[4] lat, ARGV[5] metres) or 'all'
  Returns flat { id, lon, lat, lastSeen, distance ('' in mode all), ... }; radius mode sorted by distance.
]]
local cutoff = tonumber(ARGV[1])
local out = {}
if ARGV[2] == 'radius' then
  local rows = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[3], ARGV[4], 'BYRADIUS', ARGV[5], 'm', 'ASC', 'WITHCOORD', 'WITHDIST')
  for _, r in ipairs(rows) do
    local s = redis.call('ZSCORE', KEYS[2], r[1])
    if s and tonumber(s) >= cutoff then
      out[#out + 1] = r[1]
      out[#out + 1] = r[3][1]
      out[#out + 1] = r[3][2]
      out[#out + 1] = s
      out[#out + 1] = r[2]
    end
  end
else
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], cutoff, '+inf', 'WITHSCORES')
  if #ids == 0 then return out end
  local members = {}
  for i = 1, #ids, 2 do members[#members + 1] = ids[i] end
  local pos = {}
  for c = 1, #members, 4000 do
    local chunk = {}
    for j = c, math.min(c + 3999, #members) do chunk[#chunk + 1] = members[j] end
    local p = redis.call('GEOPOS', KEYS[1], unpack(chunk))
    for _, v in ipairs(p) do pos[#pos + 1] = v end
  end
  for i, m in ipairs(members) do
    local p = pos[i]
    if p then
      out[#out + 1] = m
      out[#out + 1] = p[1]
      out[#out + 1] = p[2]
      out[#out + 1] = ids[i * 2]
      out[#out + 1] = ''
    end
  end
end
return out
