-- Prepended to every script (chat-runtime/src/cluster/calls.rs).
--
-- KEYS[1] is the room's meta hash, declared so that a cluster-aware client
-- sends the call to the room's slot. The other keys are built here from
-- ARGV[1], the prefix `{chat}:`, whose hash tag puts them in that slot.
-- ARGV[2] is the log's length (`history`), ARGV[3] the calling node's token
-- (or the node reaped). Numbers come as decimal strings and are stored as
-- given; epochs are only compared for equality, never as numbers.
--
-- Hashes are returned in Redis' order and never sorted here (Lua compares
-- strings by the server's locale); the caller sorts.
local P = ARGV[1]
local META = KEYS[1]
local LOG = P .. 'log'
local ORIGINS = P .. 'origins'
local NODES = P .. 'nodes'
-- Tokens of the nodes reaped: such a node never registers again.
local REAPED = P .. 'reaped'
local HISTORY = ARGV[2]
local TOKEN = ARGV[3]

local function members_of(token)
  return P .. 'members:' .. token
end

local function claims_of(token)
  return P .. 'claims:' .. token
end

local function nick(key)
  return P .. 'nick:' .. key
end

-- Whether Redis lost what a node knew: the room's epoch is not `epoch`
-- (flushed, or never made), or its last seq is behind the node's `cursor`
-- (rolled back).
local function lost_since(epoch, cursor)
  local seq = tonumber(redis.call('HGET', META, 'seq')) or 0
  return redis.call('HGET', META, 'epoch') ~= epoch or seq < tonumber(cursor)
end

-- Whether `holder` (`TOKEN CONN`) holds nick key `key` for `ttl` ms now:
-- set unless someone else holds it, and extended if `holder` already does.
local function take(key, holder, ttl)
  local current = redis.call('GET', nick(key))
  if current and current ~= holder then
    return false
  end
  redis.call('SET', nick(key), holder, 'PX', ttl)
  return true
end

-- Compare-and-delete: whether `holder` held nick key `key` and it is gone.
local function give_back(key, holder)
  if redis.call('GET', nick(key)) ~= holder then
    return false
  end
  redis.call('DEL', nick(key))
  return true
end

-- Connection `conn` of node `token` gives nick key `key` back: the node's
-- claim is forgotten if it is this conn's, even one that expired (else an
-- extending beat would take the nick again for a connection that gave it
-- up); whether the conn still held the key, now deleted.
local function release(token, conn, key)
  if redis.call('HGET', claims_of(token), key) == conn then
    redis.call('HDEL', claims_of(token), key)
  end
  return give_back(key, token .. ' ' .. conn)
end

-- Appends an entry as id SEQ-0 with the next seq, keeping the last HISTORY
-- entries; returns the seq. ARGV[from..to] are its field names and values:
-- a node's own entry comes as one field `e`, packed by the node; one a
-- script writes comes unpacked, with field `a` set to `a` (the lines only
-- a script knows). A caller that appends many gives `seq`, the
-- next seq, counts them itself, stores the last in META and trims the log
-- once (`trim`): an exact trim per entry costs more than the entry.
local function trim()
  redis.call('XTRIM', LOG, 'MAXLEN', HISTORY)
end

local function append(from, to, a, seq)
  if seq then
    -- The common case, a node's own entries: no copy of their fields.
    redis.call('XADD', LOG, string.format('%d-0', seq), unpack(ARGV, from, to))
    return seq
  end
  -- An entry a script writes: its fields packed here, `a` filled in, as
  -- `chat_core::cluster::entry::pack` does (name, length, ':', value).
  seq = redis.call('HINCRBY', META, 'seq', 1)
  local id = string.format('%d-0', seq)
  local packed = {}
  for i = from, to, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    if name == 'a' and a then
      value = a
    end
    table.insert(packed, name .. string.format('%d', #value) .. ':' .. value)
  end
  redis.call('XADD', LOG, 'MAXLEN', HISTORY, id, 'e', table.concat(packed))
  return seq
end
