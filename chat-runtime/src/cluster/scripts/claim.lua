-- claim: ARGV[4] the TTL (ms), then CONN, KEY per claim.
-- Returns 'reaped', or per claim 1 (granted) or 0 (taken).
if redis.call('HEXISTS', NODES, TOKEN) == 0 then
  return 'reaped'
end
local granted = {}
for i = 5, #ARGV, 2 do
  local conn, key = ARGV[i], ARGV[i + 1]
  if take(key, TOKEN .. ' ' .. conn, ARGV[4]) then
    redis.call('HSET', claims_of(TOKEN), key, conn)
    table.insert(granted, 1)
  else
    table.insert(granted, 0)
  end
end
return granted
