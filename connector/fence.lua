-- krib version fence: applies version-gated writes and deletes atomically
-- inside one hash slot. Loaded by krib with SCRIPT LOAD and run with EVALSHA.
--
-- KEYS[1..n]    the cache keys
-- KEYS[n+1..2n] their fence keys (same hash slot; see krib_fence_key())
-- ARGV[1]       mode: "A" (redis.fence all/upserts: a DELETE leaves a fence
--               that lives ARGV[2] ms) or "V" (versioned: a fence lives only
--               with a cached value, see below)
-- ARGV[2]       fence TTL in ms ("0": no expiry; mode A)
-- then per key: kind ("D" delete | "U" upsert | "H" upsert as a hash, value a
--               flat JSON object of strings | "I" invalidate: an older event's
--               key, unlinked unless the fence holds this version or a newer
--               one), value, ttl ms ("0": none),
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
-- Mode V (versioned): a fence exists only beside a cached value (written
-- with it, expiring with it) or as a fill's lease ("L:<token>", from the
-- krib_lease function). krib's DELETEs are plain UNLINKs of the key and its
-- fence, so an invalidation leaves nothing behind and voids a racing fill.
-- An UPSERT writes only over a value whose version it knows to be older:
-- without a fence it fails closed (a value without a known version is
-- unlinked; an absent key stays absent for the read path to fill; a lease
-- is voided).
--
-- Returns one integer per key:
--   1  applied (value written, or key unlinked and fence advanced)
--   0  stale: the fence already holds this version or a newer one (an UPSERT
--      was not written; a DELETE still unlinked the key)
--   2  concurrent upsert: neither version is newest, so the key was unlinked
--      (mode A: and fenced at the merged vector) for the next read to refill;
--      mode V also: a value without a known version, unlinked
--   3  mode V: not cached, nothing written
-- For "I": 0 covered (the fence holds this version or a newer one: the
-- newer event named this key, its value stays), 1 unlinked (mode A: and
-- fenced at the merged vector).

local n = #KEYS / 2
local mode = ARGV[1]
local fence_ttl = ARGV[2]
local a = 3
local out = {}
if mode ~= 'A' and mode ~= 'V' then
  return redis.error_reply('ERR krib fence: bad mode')
end

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
  local b = 3
  for i = 1, n do
    local kind, ttl, m = ARGV[b], ARGV[b + 2], tonumber(ARGV[b + 3])
    if kind ~= 'D' and kind ~= 'U' and kind ~= 'H' and kind ~= 'I' then
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

-- (Lua 5.1 has no goto: "repeat ... until true" with break is the continue.)
for i = 1, n do
  repeat
  local key, fkey = KEYS[i], KEYS[n + i]
  local kind, value, ttl, m = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local cur = {}
  local f = redis.call('GET', fkey)
  local versioned = mode == 'V'
  if versioned and kind == 'I' and f and string.sub(f, 1, 2) ~= 'L:' then
    -- a cached value with a known version: kept only if it covers this one
    local newer = false
    for o, c in string.gmatch(f, '([^=\n]+)=(%d+)\n') do
      cur[o] = c
    end
    for _ = 1, m do
      local o, c = ARGV[a], ARGV[a + 1]
      a = a + 2
      if cmp(c, cur[o] or '0') > 0 then
        newer = true
      end
    end
    if newer then
      redis.call('UNLINK', key, fkey)
      out[i] = 1
    else
      out[i] = 0
    end
    break
  end
  if versioned and (kind == 'D' or kind == 'I' or not f or string.sub(f, 1, 2) == 'L:') then
    -- No known version (or a DELETE): nothing may be written here.
    a = a + 2 * m
    if kind == 'D' or kind == 'I' then
      redis.call('UNLINK', key, fkey)
      out[i] = 1
    else
      if f then
        redis.call('UNLINK', fkey) -- a fill in flight read older data: void it
      end
      if redis.call('UNLINK', key) == 1 then
        out[i] = 2
      else
        out[i] = 3
      end
    end
    break
  end
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
    out[i] = 0 -- "I": covered, the value stays
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
    if versioned and older then
      -- concurrent: the value and its fence go; the read path refills
      redis.call('UNLINK', key, fkey)
      out[i] = 2
      break
    end
    -- mode V: the fence lives exactly as long as the value it describes
    local fttl = versioned and ttl or fence_ttl
    if fttl ~= '0' then
      redis.call('SET', fkey, merged, 'PX', fttl)
    else
      redis.call('SET', fkey, merged)
    end
    if kind == 'D' or kind == 'I' or older then
      redis.call('UNLINK', key)
      out[i] = (kind == 'D' or kind == 'I') and 1 or 2
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
  until true
end
return out
