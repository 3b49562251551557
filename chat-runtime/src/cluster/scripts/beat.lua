-- beat: ARGV[4] the epoch the node knows, ARGV[5] its cursor, ARGV[6] the
-- TTL (ms) to extend its claims to, or '' to leave them.
-- Returns 'reset', 'reaped', or {nodes (TOKEN, COUNTER...), the conns
-- whose claim someone else took (CONN...)}.
if lost_since(ARGV[4], ARGV[5]) then
  return 'reset'
end
if redis.call('HEXISTS', NODES, TOKEN) == 0 then
  return 'reaped'
end
redis.call('HINCRBY', NODES, TOKEN, 1)
local lost = {}
if ARGV[6] ~= '' then
  local claims = redis.call('HGETALL', claims_of(TOKEN))
  for i = 1, #claims, 2 do
    local key, conn = claims[i], claims[i + 1]
    if not take(key, TOKEN .. ' ' .. conn, ARGV[6]) then
      redis.call('HDEL', claims_of(TOKEN), key)
      table.insert(lost, conn)
    end
  end
end
return {redis.call('HGETALL', NODES), lost}
