-- krib version fence: applies version-gated writes and deletes atomically
-- inside one hash slot. Loaded by krib with SCRIPT LOAD and run with EVALSHA.
--
-- KEYS[1..n]    the cache keys
-- KEYS[n+1..2n] their fence keys (same hash slot; see krib_fence_key())
-- ARGV[1]       fence TTL in ms ("0": no expiry)
-- then per key: kind ("D" delete | "U" upsert | "H" upsert as a hash, value a
--               flat JSON object of strings), value, ttl ms ("0": none),
--               vector size m, then m pairs origin, counter
--
-- A fence holds the newest version vector applied to its key as lines
-- "origin=counter". Counters are canonical decimal strings (checked here and
-- by krib before sending), compared length first, then bytewise, so 64-bit
-- values stay exact (Lua numbers are doubles).
--
-- A key without a fence accepts any version (counter 0 included): nothing
-- newer was applied to it, or its fence expired.
--
-- A DELETE always unlinks its key: removing a cached value can cost a miss,
-- never correctness, and a DELETE older than the fence may still name a key
-- that no newer event of its entity covered. Only the fence merge, and the
-- reply, depend on the version.
--
-- Returns one integer per key:
--   1  applied (value written, or key unlinked and fence advanced)
--   0  stale: the fence already holds this version or a newer one (an UPSERT
--      was not written; a DELETE still unlinked the key)
--   2  concurrent upsert: neither version is newest, so the key was unlinked
--      and fenced at the merged vector for the next read to refill

local n = #KEYS / 2
local fence_ttl = ARGV[1]
local a = 2
local out = {}

local function canonical(c)
  if c == '0' then
    return true
  end
  if #c > 19 or not string.match(c, '^[1-9]%d*$') then
    return false
  end
  return #c < 19 or c <= '9223372036854775807'
end

local function cmp(x, y)
  if #x ~= #y then
    return #x < #y and -1 or 1
  end
  if x == y then
    return 0
  end
  return x < y and -1 or 1
end

-- Checked for every key before anything is written: a bad argument fails
-- the call, and krib resends the chunk key by key.
do
  local b = 2
  for i = 1, n do
    local kind, ttl, m = ARGV[b], ARGV[b + 2], tonumber(ARGV[b + 3])
    if kind ~= 'D' and kind ~= 'U' and kind ~= 'H' then
      return redis.error_reply('ERR krib fence: bad kind for ' .. KEYS[i])
    end
    if not canonical(ttl) or m == nil then
      return redis.error_reply('ERR krib fence: bad ttl or vector size for ' .. KEYS[i])
    end
    if kind == 'H' then
      local ok, t = pcall(cjson.decode, ARGV[b + 1])
      if not ok or type(t) ~= 'table' then
        return redis.error_reply('ERR krib fence: hash value of ' .. KEYS[i] ..
          ' is not a JSON object')
      end
      for f, v in pairs(t) do
        if type(f) ~= 'string' or type(v) ~= 'string' then
          return redis.error_reply('ERR krib fence: hash value of ' .. KEYS[i] ..
            ' has a field that is not a string')
        end
      end
    end
    b = b + 4
    for _ = 1, m do
      local o, c = ARGV[b], ARGV[b + 1]
      if o == nil or c == nil or o == '' or string.find(o, '[=\n]') or not canonical(c) then
        return redis.error_reply('ERR krib fence: bad version entry for ' .. KEYS[i])
      end
      b = b + 2
    end
  end
end

for i = 1, n do
  local key, fkey = KEYS[i], KEYS[n + i]
  local kind, value, ttl, m = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local cur = {}
  local f = redis.call('GET', fkey)
  if f then
    for o, c in string.gmatch(f, '([^=\n]+)=(%d+)\n') do
      cur[o] = c
    end
  end
  local newer, older = not f, false
  local vv = {}
  for _ = 1, m do
    local o, c = ARGV[a], ARGV[a + 1]
    a = a + 2
    vv[o] = c
    local s = cur[o]
    if s == nil then
      if c ~= '0' then
        newer = true
      end
    else
      local d = cmp(c, s)
      if d > 0 then
        newer = true
      elseif d < 0 then
        older = true
      end
    end
  end
  for o, s in pairs(cur) do
    if vv[o] == nil and s ~= '0' then
      older = true
    end
  end
  if not newer then
    if kind == 'D' then
      redis.call('UNLINK', key)
    end
    out[i] = 0
  else
    for o, c in pairs(vv) do
      local s = cur[o]
      if s == nil or cmp(c, s) > 0 then
        cur[o] = c
      end
    end
    local lines = {}
    for o, c in pairs(cur) do
      lines[#lines + 1] = o .. '=' .. c .. '\n'
    end
    local merged = table.concat(lines)
    if fence_ttl ~= '0' then
      redis.call('SET', fkey, merged, 'PX', fence_ttl)
    else
      redis.call('SET', fkey, merged)
    end
    if kind == 'D' or older then
      redis.call('UNLINK', key)
      out[i] = (kind == 'D') and 1 or 2
    elseif kind == 'H' then
      -- write-through as a hash: value is a flat JSON object of strings
      redis.call('UNLINK', key)
      local fields = {}
      for f, v in pairs(cjson.decode(value)) do
        fields[#fields + 1] = f
        fields[#fields + 1] = v
      end
      if #fields > 0 then
        redis.call('HSET', key, unpack(fields))
        if ttl ~= '0' then
          redis.call('PEXPIRE', key, ttl)
        end
      end
      out[i] = 1
    else
      if ttl ~= '0' then
        redis.call('SET', key, value, 'PX', ttl)
      else
        redis.call('SET', key, value)
      end
      out[i] = 1
    end
  end
end
return out
