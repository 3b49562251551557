-- reap: ARGV[3] the node to remove, ARGV[4] its beat counter when it was
-- found dead ('' when it removes itself), ARGV[5] the number of fields of
-- its `x` entry, then those fields, whose `a` (its nicks) is filled in here.
-- Returns 1 if this call removed the node, else 0.
local counter = redis.call('HGET', NODES, TOKEN)
if redis.call('EXISTS', META) == 0 or not counter then
  return 0
end
if ARGV[4] ~= '' and counter ~= ARGV[4] then
  return 0
end
local nicks = redis.call('HVALS', members_of(TOKEN))
local claims = redis.call('HGETALL', claims_of(TOKEN))
for i = 1, #claims, 2 do
  give_back(claims[i], TOKEN .. ' ' .. claims[i + 1])
end
redis.call('DEL', members_of(TOKEN), claims_of(TOKEN))
redis.call('HDEL', NODES, TOKEN)
redis.call('HDEL', ORIGINS, TOKEN)
redis.call('SADD', REAPED, TOKEN)
append(6, 5 + 2 * tonumber(ARGV[5]), table.concat(nicks, '\n'))
return 1
