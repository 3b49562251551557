-- publish: per entry, ARGV from i: N, the member change ('set', 'del' or
-- ''), CONN, NICK (for 'set'), '1' if the entry gives up nick key KEY (else
-- '0'), KEY, the number of fields, the fields.
-- Returns 'reset' or 'reaped' for every entry, or per entry its seq or
-- 'dup' (its N was published before).
if redis.call('EXISTS', META) == 0 then
  return 'reset'
end
if redis.call('HEXISTS', NODES, TOKEN) == 0 then
  return 'reaped'
end
local last = tonumber(redis.call('HGET', ORIGINS, TOKEN)) or 0
local first_last = last
local seq = tonumber(redis.call('HGET', META, 'seq')) or 0
local written = {}
local i = 4
while i <= #ARGV do
  local n, member, conn, name = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local gives_up, key = ARGV[i + 4] == '1', ARGV[i + 5]
  local from, to = i + 7, i + 6 + 2 * tonumber(ARGV[i + 6])
  i = to + 1
  if tonumber(n) <= last then
    table.insert(written, 'dup')
  else
    last = tonumber(n)
    if member == 'set' then
      redis.call('HSET', members_of(TOKEN), conn, name)
    elseif member == 'del' then
      redis.call('HDEL', members_of(TOKEN), conn)
    end
    if gives_up then
      release(TOKEN, conn, key)
    end
    seq = seq + 1
    table.insert(written, append(from, to, nil, seq))
  end
end
-- Once for the call: the script runs atomically.
if last ~= first_last then
  redis.call('HSET', ORIGINS, TOKEN, last)
  -- %d: Lua's own number format turns large ones into 1e+14.
  redis.call('HSET', META, 'seq', string.format('%d', seq))
  trim()
end
return written
