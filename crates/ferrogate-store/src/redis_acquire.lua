-- ferrogate rate limits: check every counter and, only if all have room, charge them all.
-- One atomic round trip per request; time is Redis's own (TIME), never a gateway's clock.
-- Mirrors ferrogate-core's limits::gcra and limits::window (same operations, same order).
--
-- A key is a subject (a rule's scope value, an API key, a tenant) and holds its two counters,
-- requests (R) then tokens (T), in one string, with the expiry it was last given:
--   GCRA    'g:<expiry ms>:<tat R>:<tat T>'
--   window  'w:<expiry ms>:<window R>:<curr R>:<prev R>:<window T>:<curr T>:<prev T>'
-- A counter never charged is 0s (which read as empty). A value of another layout or type reads
-- as empty and is replaced.
-- KEYS: the subjects. ARGV, 7 per key: algo ('g' GCRA | 'w' sliding window), then for R and T
--   three numbers each, GCRA: cost as time (µs), burst as time (µs), 0; window: cost, limit, period
--   (µs); a counter the check does not name is '-', 0, 0 and is left as stored.
-- Returns {allowed, now_us, then per key the value read ('' if none)}: the gateway parses the
--   values as this script does and derives its decisions and headers from them.
--
-- Cost (measured with redis-benchmark and INFO commandstats, docs/BENCHMARKS.md): Redis runs
-- each redis.call as a command of its own, about a µs each, twice that for a write with a
-- relative expiry (it is rewritten to an absolute one for replication); Lua's library calls
-- (match, format, tonumber) cost a few tenths of a µs each, and so does each value returned.
-- So a check is TIME, one MGET, one SET per key charged that keeps the key's TTL (KEEPTTL)
-- while the stored expiry covers the counters, and otherwise sets one with room to spare (as
-- long again as needed, at least 10 s, so it is renewed only now and then); it parses each value
-- once and returns the values as read.
-- Redis 3.2-4 replicate a script that reads TIME by its effects only when asked (5+: always).
if redis.replicate_commands then
  redis.replicate_commands()
end
local tonumber, match, format, call, floor = tonumber, string.match, string.format, redis.call, math.floor
local t = call('TIME')
local now = t[1] * 1000000 + t[2]
local now_ms = floor(now / 1000)
local stored = call('MGET', unpack(KEYS))
local out = {0, now}
local new = {}
local ok = true
for i = 1, #KEYS do
  local b = (i - 1) * 7
  local s = stored[i]
  out[i + 2] = s or ''
  local e, n1, n2, n3, n4, n5, n6
  local need = 0
  if ARGV[b + 1] == 'g' then
    if s then
      e, n1, n4 = match(s, '^g:(%d+):(%-?%d+):(%-?%d+)$')
    end
    if e then
      e, n1, n4 = tonumber(e), tonumber(n1), tonumber(n4)
    else
      e, n1, n4 = 0, 0, 0
    end
    local a = ARGV[b + 2]
    if a ~= '-' then
      local base = n1 > now and n1 or now
      local nt = base + a
      if nt - now <= tonumber(ARGV[b + 3]) or base == now then
        n1, need = nt, nt - now
      else
        ok = false
      end
    end
    a = ARGV[b + 5]
    if a ~= '-' then
      local base = n4 > now and n4 or now
      local nt = base + a
      if nt - now <= tonumber(ARGV[b + 6]) or base == now then
        n4 = nt
        if nt - now > need then
          need = nt - now
        end
      else
        ok = false
      end
    end
    new[i] = {e, need, n1, n4}
  else
    if s then
      e, n1, n2, n3, n4, n5, n6 = match(s, '^w:(%d+):(%-?%d+):(%d+):(%d+):(%-?%d+):(%d+):(%d+)$')
    end
    local v
    if e then
      v = {tonumber(n1), tonumber(n2), tonumber(n3), tonumber(n4), tonumber(n5), tonumber(n6)}
      e = tonumber(e)
    else
      v = {0, 0, 0, 0, 0, 0}
      e = 0
    end
    for d = 0, 1 do
      local a = ARGV[b + 2 + d * 3]
      if a ~= '-' then
        local cost, limit, period = tonumber(a), tonumber(ARGV[b + 3 + d * 3]), tonumber(ARGV[b + 4 + d * 3])
        local k = 1 + d * 3
        local w = floor(now / period)
        local curr, prev = 0, 0
        if v[k] == w then
          curr, prev = v[k + 1], v[k + 2]
        elseif v[k] == w - 1 then
          prev = v[k + 1]
        end
        local elapsed = now - w * period
        local est = prev * ((period - elapsed) / period) + curr
        if est + cost <= limit or (curr == 0 and prev == 0) then
          v[k], v[k + 1], v[k + 2] = w, curr + cost, prev
          if (w + 2) * period - now > need then
            need = (w + 2) * period - now
          end
        else
          ok = false
        end
      end
    end
    new[i] = {e, need, v}
  end
end
if ok then
  out[1] = 1
  for i = 1, #KEYS do
    local n = new[i]
    local e = n[1]
    local need = now_ms + floor(n[2] / 1000) + 1000
    local keep = need <= e
    if not keep then
      e = need + (need - now_ms > 10000 and need - now_ms or 10000)
    end
    local value
    if n[4] then
      value = format('g:%d:%d:%d', e, n[3], n[4])
    else
      local v = n[3]
      value = format('w:%d:%d:%d:%d:%d:%d:%d', e, v[1], v[2], v[3], v[4], v[5], v[6])
    end
    if keep then
      call('SET', KEYS[i], value, 'KEEPTTL')
    else
      call('SET', KEYS[i], value, 'PX', e - now_ms)
    end
  end
end
return out
