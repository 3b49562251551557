-- hello: ARGV[4] the epoch the node knew ('' when it starts), ARGV[5] its
-- cursor, ARGV[6] the epoch for a new room, ARGV[7] the TTL of the claims
-- (ms), ARGV[8] '1' for the roster; ARGV[9] the number of fields of
-- the `y` entry written on a reset, those fields, then the node's members
-- as CONN, NICK, KEY.
-- Returns {'reaped'}, or {'room', epoch, first id or nil, top seq,
-- reset 0/1, nodes (TOKEN, COUNTER...), roster (TOKEN, CONN, NICK...) or
-- nil, conflicts (CONN...)}.
if redis.call('EXISTS', META) == 0 then
  redis.call('DEL', LOG)
  redis.call('HSET', META, 'epoch', ARGV[6], 'seq', '0')
end
local start = ARGV[4] == ''
local reset = not start and lost_since(ARGV[4], ARGV[5])
if redis.call('SISMEMBER', REAPED, TOKEN) == 1 then
  return {'reaped'}
end
if not start and not reset and redis.call('HEXISTS', NODES, TOKEN) == 0 then
  return {'reaped'}
end

-- The node's members and claims become what it says it holds: after a
-- split its claims may have expired, or a leave not be written. Claims it
-- no longer holds are given back.
redis.call('HSETNX', NODES, TOKEN, '0')
local sync_from, sync_to = 10, 9 + 2 * tonumber(ARGV[9])
local holds = {}
for i = sync_to + 1, #ARGV, 3 do
  holds[ARGV[i + 2]] = ARGV[i]
end
local claims = redis.call('HGETALL', claims_of(TOKEN))
for i = 1, #claims, 2 do
  local key, conn = claims[i], claims[i + 1]
  if holds[key] ~= conn then
    give_back(key, TOKEN .. ' ' .. conn)
  end
end
redis.call('DEL', members_of(TOKEN), claims_of(TOKEN))
local conflicts = {}
local lines = {}
for i = sync_to + 1, #ARGV, 3 do
  local conn, name, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if take(key, TOKEN .. ' ' .. conn, ARGV[7]) then
    redis.call('HSET', members_of(TOKEN), conn, name)
    redis.call('HSET', claims_of(TOKEN), key, conn)
    table.insert(lines, conn .. '\t' .. name)
  else
    table.insert(conflicts, conn)
  end
end
if reset then
  append(sync_from, sync_to, table.concat(lines, '\n'))
end

local roster = false
if start or reset or ARGV[8] == '1' then
  roster = {}
  for _, node in ipairs(redis.call('HKEYS', NODES)) do
    local members = redis.call('HGETALL', members_of(node))
    for i = 1, #members, 2 do
      table.insert(roster, node)
      table.insert(roster, members[i])
      table.insert(roster, members[i + 1])
    end
  end
end
local first = redis.call('XRANGE', LOG, '-', '+', 'COUNT', 1)[1]
return {
  'room',
  redis.call('HGET', META, 'epoch'),
  first and first[1] or false,
  redis.call('HGET', META, 'seq'),
  reset and 1 or 0,
  redis.call('HGETALL', NODES),
  roster,
  conflicts,
}
