"""The Lua scripts redisquota runs in Redis, one atomic step per allocation.

Written for mixerhub from the algorithms in docs/adapters/redisquota.md. Each script reads
and writes only the keys it is given, so a whole allocation (deduplication, window upkeep,
the grant) happens as one step however many hub replicas share the server.

KEYS[1] is the window, KEYS[2] the deduplication record. ARGV:
  1 maxAmount   2 amount   3 best effort (1/0)   4 window length in ms
  5 bucket length in ms (rolling window only; 0 otherwise)
  6 deduplication id given (1/0)   7 now in ms, or "" for the Redis server's clock
The reply is ``{granted, replayed, remaining, reset_ms}``: replayed is 1 when a
deduplication record answered (remaining and reset_ms are then -1, unknown); remaining is
what is left after this grant, reset_ms the time until more becomes available (0: now).
"""

from __future__ import annotations

# Shared by both scripts: the clock, deduplication and the grant rule.
_PRELUDE = """
local max_amount = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local best_effort = ARGV[3] == '1'
local window = tonumber(ARGV[4])
local bucket = tonumber(ARGV[5])
local dedup = ARGV[6] == '1'

local now
if ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- integers as text without an exponent (tostring gives 1.7e+12 past 14 digits)
local function int(x) return string.format('%.0f', x) end

-- A record "granted:until" answers a retry until `until` (ms, same clock as now).
local function replay()
  if not dedup then return nil end
  local seen = redis.call('GET', KEYS[2])
  if not seen then return nil end
  local granted, expires = string.match(seen, '^(%d+):(%d+)$')
  if granted and tonumber(expires) > now then return tonumber(granted) end
  return nil
end

local function remember(granted)
  if dedup then
    redis.call('SET', KEYS[2], int(granted) .. ':' .. int(now + window), 'PX', int(window))
  end
end

-- All of amount or nothing; best effort takes what is left.
local function grant_size(available)
  if amount <= available then return amount end
  if best_effort and available > 0 then return available end
  return 0
end
"""

#: A counter that starts with the first grant after the previous window ended and lasts
#: ``window`` ms. Hash fields: s = window start, n = units granted in it.
FIXED_WINDOW = _PRELUDE + """
local replayed = replay()
if replayed then return {replayed, 1, -1, -1} end

local state = redis.call('HMGET', KEYS[1], 's', 'n')
local start, used = tonumber(state[1]), tonumber(state[2]) or 0
if start == nil or now >= start + window then
  start, used = now, 0
end
local granted = grant_size(max_amount - used)
if granted > 0 then
  redis.call('HSET', KEYS[1], 's', int(start), 'n', int(used + granted))
  redis.call('PEXPIRE', KEYS[1], int(math.max(start + window - now, 1)))
end
remember(granted)
used = used + granted
local reset = 0
if used > 0 then reset = start + window - now end
return {granted, 0, max_amount - used, reset}
"""

#: Units counted in buckets of ``bucket`` ms (hash field = bucket index). A bucket is
#: forgotten once all of it is older than the window, so a grant is released between one
#: window and one window plus one bucket after it was made: late, never early. Fields:
#: u = units in live buckets, o = oldest bucket index that may still hold units.
ROLLING_WINDOW = _PRELUDE + """
local replayed = replay()
if replayed then return {replayed, 1, -1, -1} end

local current = math.floor(now / bucket)
local oldest_live = math.floor((now - window) / bucket)
local state = redis.call('HMGET', KEYS[1], 'o', 'u')
local oldest, used = tonumber(state[1]), tonumber(state[2]) or 0
local stored = oldest ~= nil
local changed = false  -- a refusal that expired nothing writes nothing
if oldest == nil or oldest_live - oldest > current - oldest_live + 1 then
  -- nothing stored, or every stored bucket is long dead: start afresh
  if stored then redis.call('DEL', KEYS[1]) end
  stored, oldest, used = false, oldest_live, 0
else
  for index = oldest, oldest_live - 1 do
    local units = redis.call('HGET', KEYS[1], int(index))
    if units then
      used = used - tonumber(units)
      redis.call('HDEL', KEYS[1], int(index))
    end
  end
  if oldest < oldest_live then oldest, changed = oldest_live, true end
end
local granted = grant_size(max_amount - used)
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], int(current), granted)
  used, changed = used + granted, true
end
local reset = 0
if used > 0 then
  if changed then
    -- skip empty buckets so `o` names the oldest holding units (amortised O(1) per bucket)
    while oldest < current and not redis.call('HGET', KEYS[1], int(oldest)) do
      oldest = oldest + 1
    end
    redis.call('HSET', KEYS[1], 'o', int(oldest), 'u', int(used))
    redis.call('PEXPIRE', KEYS[1], int(window + bucket))
  end
  reset = (oldest + 1) * bucket + window - now
elseif stored then
  redis.call('DEL', KEYS[1])
end
remember(granted)
return {granted, 0, max_amount - used, reset}
"""
