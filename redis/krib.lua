#!lua name=krib
-- krib's Redis Functions library for applications that fill the cache.
--
-- A fill races with invalidations: the application reads a row (version 5),
-- the row changes (version 6), krib invalidates the key, and only then does
-- the slow application write its version-5 copy back — a stale value that no
-- later event will remove. krib keeps, in the key's hash slot, a fence with
-- the newest version vector it applied to the key ("origin=counter" lines,
-- see connector/fence.lua). krib_fill refuses a fill that is older than that
-- fence, atomically.
--
-- Load once per master (functions replicate to replicas):
--   redis-cli --cluster call HOST:PORT FUNCTION LOAD REPLACE "$(cat redis/krib.lua)" \
--             --cluster-only-masters
--
-- FCALL krib_fill 2 <key> <fence key> <ttl ms, 0: none> <value> <origin> <counter> [...]
--   The fence key is "krib:f:<key>" when the key has a hash tag ("user:{42}:
--   profile" -> "krib:f:user:{42}:profile"), else "krib:f:{<key>}"; a wrong
--   one is an error that names the right one. The version is the one of the
--   data being written, in the vector form krib's events carry (for Debezium
--   routes: the route's origin and the row's counter).
--   Returns 1 (written) or 0 (refused: krib already invalidated a version
--   this fill does not cover; read again from the database).
--
-- With redis.fence = "versioned" krib leaves no fence behind an invalidation
-- (it UNLINKs the key and its fence), so a fill proves instead that no
-- invalidation came between its database read and its write: a lease, kept
-- in the fence key, that the invalidation's UNLINK voids (memcache leases,
-- NSDI 2013):
--
-- FCALL krib_lease 2 <key> <fence key> <ttl ms> <token>
--   On a miss, before reading the database. Returns 1 (lease taken: read,
--   then krib_fill_leased with the same token) or 0 (the key is cached, or
--   another fill holds the lease: read the cache again or the database
--   without filling). A fence left without its value (the value evicted; a
--   DELETE's in redis.fence=all) does not refuse the lease: the lease keeps
--   its version lines as a floor the fill must cover. A lease past its ttl
--   is taken over.
-- FCALL krib_fill_leased 2 <key> <fence key> <token> <ttl ms, 0: none> <value> <origin> <counter> [...]
--   Writes the value, and its version as the key's fence (expiring with it),
--   only while the lease is still this token. Returns 1 (written) or 0 (an
--   invalidation or a write-through voided the lease: do not cache).
--
-- FCALL_RO krib_fence 2 <key> <fence key>  -> the fence text, or nil

local function has_tag(key)
  local open = string.find(key, '{', 1, true)
  if not open then
    return false
  end
  local close = string.find(key, '}', open + 1, true)
  return close ~= nil and close > open + 1
end

local function fence_name(key)
  if has_tag(key) then
    return 'krib:f:' .. key
  end
  return 'krib:f:{' .. key .. '}'
end

local function check_fence_key(keys)
  local want = fence_name(keys[1])
  if keys[2] ~= want then
    return redis.error_reply('ERR krib: the fence key of ' .. keys[1] .. ' is ' .. want)
  end
  return nil
end

-- Counters travel as canonical decimal strings: "0" or no leading zero, at
-- most 19 digits and <= 2^63-1, so that comparing length first, then bytes,
-- is numeric order ("0001" would otherwise beat "999").
local function canonical(c)
  if c == '0' then
    return true
  end
  if #c > 19 or not string.match(c, '^[1-9]%d*$') then
    return false
  end
  return #c < 19 or c <= '9223372036854775807'
end

-- Decimal strings compared exactly (64-bit counters exceed Lua doubles).
local function cmp(x, y)
  if #x ~= #y then
    return #x < #y and -1 or 1
  end
  if x == y then
    return 0
  end
  return x < y and -1 or 1
end

-- A lease lives in the fence key as "L:<token>".
local function is_lease(f)
  return f and string.sub(f, 1, 2) == 'L:'
end

local function parse_version(args, first, what)
  local mine, lines = {}, {}
  for i = first, #args, 2 do
    if not canonical(args[i + 1]) then
      return nil, redis.error_reply('ERR ' .. what .. ': counter ' .. args[i + 1] ..
        ' is not a canonical decimal (0..9223372036854775807, no sign, no leading zeros)')
    end
    if args[i] == '' or string.find(args[i], '[=\n]') then
      return nil, redis.error_reply('ERR ' .. what .. ': bad origin')
    end
    mine[args[i]] = args[i + 1]
    lines[#lines + 1] = args[i] .. '=' .. args[i + 1] .. '\n'
  end
  return mine, table.concat(lines)
end

-- A lease is "L:<token>\n@<deadline ms, Redis' clock>\n", then the version
-- lines of a fence it stands in for (the floor): a fence left without its
-- value (evicted; or a DELETE's in redis.fence=all) must not make the key
-- uncachable for good, nor be forgotten while it may still refuse an older
-- write. A lease past its deadline was abandoned by its fill.
local function lease_parts(f)
  local token, rest = string.match(f, '^L:([^\n]*)\n?(.*)$')
  local deadline, floor = string.match(rest, '^@(%d+)\n(.*)$')
  if not deadline then
    return token, nil, rest
  end
  return token, tonumber(deadline), floor
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease(keys, args)
  if #keys ~= 2 or #args ~= 2 then
    return redis.error_reply('ERR krib_lease: 2 keys, then ttl and token')
  end
  local bad = check_fence_key(keys)
  if bad then
    return bad
  end
  local ttl = tonumber(args[1])
  if not canonical(args[1]) or ttl < 1 then
    return redis.error_reply('ERR krib_lease: ttl ' .. args[1] .. ' is not a positive integer')
  end
  if redis.call('EXISTS', keys[1]) == 1 then
    return 0
  end
  local f = redis.call('GET', keys[2])
  local floor = ''
  if is_lease(f) then
    local _, deadline, fl = lease_parts(f)
    if not deadline or deadline > now_ms() then
      return 0 -- another fill holds it
    end
    floor = fl -- abandoned: taken over, its floor kept
  elseif f then
    floor = f -- a version fence without its value
  end
  local text = 'L:' .. args[2] .. '\n@' .. string.format('%d', now_ms() + ttl) .. '\n' .. floor
  local keep = f and redis.call('PTTL', keys[2]) or -2
  if floor ~= '' and keep == -1 then
    redis.call('SET', keys[2], text) -- the floor never expired: neither does it now
  else
    redis.call('SET', keys[2], text, 'PX', math.max(ttl, keep))
  end
  return 1
end

local function fill_leased(keys, args)
  if #keys ~= 2 or #args < 5 or #args % 2 ~= 1 then
    return redis.error_reply('ERR krib_fill_leased: 2 keys, then token, ttl, value, origin ' ..
      'counter pairs')
  end
  local bad = check_fence_key(keys)
  if bad then
    return bad
  end
  local token, ttl, value = args[1], args[2], args[3]
  local mine, lines = parse_version(args, 4, 'krib_fill_leased')
  if not mine then
    return lines
  end
  local f = redis.call('GET', keys[2])
  if not is_lease(f) then
    return 0
  end
  local held, _, floor = lease_parts(f)
  if held ~= token then
    return 0
  end
  -- Read after the lease was taken, the data cannot be older than the
  -- floor; a lagging replica's could: refused, and the floor stays in the
  -- fence written with the value.
  local merged = {lines}
  for o, c in string.gmatch(floor, '([^=\n]+)=(%d+)\n') do
    if mine[o] == nil then
      merged[#merged + 1] = o .. '=' .. c .. '\n'
    elseif cmp(mine[o], c) < 0 then
      return 0
    end
  end
  lines = table.concat(merged)
  if ttl ~= '0' then
    redis.call('SET', keys[1], value, 'PX', ttl)
    redis.call('SET', keys[2], lines, 'PX', ttl)
  else
    redis.call('SET', keys[1], value)
    redis.call('SET', keys[2], lines)
  end
  return 1
end

local function fill(keys, args)
  if #keys ~= 2 or #args < 4 or #args % 2 ~= 0 then
    return redis.error_reply('ERR krib_fill: 2 keys, then ttl, value, origin counter pairs')
  end
  local bad = check_fence_key(keys)
  if bad then
    return bad
  end
  local ttl, value = args[1], args[2]
  local mine = {}
  for i = 3, #args, 2 do
    if not canonical(args[i + 1]) then
      return redis.error_reply('ERR krib_fill: counter ' .. args[i + 1] ..
        ' is not a canonical decimal (0..9223372036854775807, no sign, no leading zeros)')
    end
    mine[args[i]] = args[i + 1]
  end
  local f = redis.call('GET', keys[2])
  if is_lease(f) then
    return 0 -- a leased fill is in flight; it owns this miss
  end
  if f then
    for o, c in string.gmatch(f, '([^=\n]+)=(%d+)\n') do
      local m = mine[o] or '0'
      if cmp(m, c) < 0 then
        return 0
      end
    end
  end
  if ttl ~= '0' then
    redis.call('SET', keys[1], value, 'PX', ttl)
  else
    redis.call('SET', keys[1], value)
  end
  return 1
end

local function fence(keys)
  local bad = check_fence_key(keys)
  if bad then
    return bad
  end
  return redis.call('GET', keys[2])
end

redis.register_function('krib_fill', fill)
redis.register_function('krib_lease', lease)
redis.register_function('krib_fill_leased', fill_leased)
redis.register_function{function_name = 'krib_fence', callback = fence, flags = {'no-writes'}}
