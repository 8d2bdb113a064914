--[[
  cell-sweep-2.lua: removes entities silent longer than the TTL from one cell, atomically, so
  any number of gateways may sweep the same cell: each removal is reported exactly once.
  KEYS[1] GEO set, KEYS[2] last-seen sorted set
  ARGV[1] cutoff ms (seen below it = stale), ARGV[2] max members per call
  Returns flat { id, lon, lat, lastSeen, ... } of the removed members.
]]
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local members, scores = {}, {}
for i = 1, #ids, 2 do
  members[#members + 1] = ids[i]
  scores[#scores + 1] = ids[i + 1]
end
local pos = redis.call('GEOPOS', KEYS[1], unpack(members))
redis.call('ZREM', KEYS[2], unpack(members))
redis.call('ZREM', KEYS[1], unpack(members))
local out = {}
for i, m in ipairs(members) do
  local p = pos[i]
  if p then
    out[#out + 1] = m
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
    out[#out + 1] = scores[i]
  end
end
return out
