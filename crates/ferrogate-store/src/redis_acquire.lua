-- ferrogate rate limits: check every counter and, only if all have room, charge them all.
-- One atomic round trip per request; time is Redis's own (TIME), never a gateway's clock.
-- Mirrors ferrogate-core's limits::gcra and limits::window (same operations, same order).
-- KEYS: the counters. ARGV, 6 per key: algo ('g' GCRA | 'w' sliding window), cost,
--   inc_us (GCRA: cost as time), tol_us (GCRA: burst as time), limit, period_us.
-- Returns {allowed, now_us, then per key: present, a, b, c} where the pre-check state is
--   GCRA {tat} or window {window, curr, prev}; the gateway derives its headers from it.
-- Each counter is one string ('<tat>' or '<window>:<curr>:<prev>'), so a check costs one MGET
--   for every read and one SET ... PX per counter charged: Redis runs each command of a script
--   as a call of its own, and this is the fewest (a key of another type reads as empty and is
--   replaced).
-- Redis 3.2-4 replicate a script that reads TIME by its effects only when asked (5+: always).
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {0, now}
local new = {}
local ok = true
local stored = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  local b = (i - 1) * 6
  local algo = ARGV[b + 1]
  local cost = tonumber(ARGV[b + 2])
  local limit = tonumber(ARGV[b + 5])
  local period = tonumber(ARGV[b + 6])
  if algo == 'g' then
    local inc, tol = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
    local v = stored[i] and tonumber(stored[i])
    local tat = now
    if v then
      tat = v
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    out[#out + 1] = tat
    out[#out + 1] = 0
    out[#out + 1] = 0
    local base = math.max(tat, now)
    local nt = base + inc
    if nt - now <= tol or base == now then
      new[i] = {nt}
    else
      ok = false
    end
  else
    local sw, sc, sp
    if stored[i] then
      sw, sc, sp = string.match(stored[i], '^(%-?%d+):(%d+):(%d+)$')
    end
    local w = math.floor(now / period)
    local curr, prev = 0, 0
    if sw then
      sw, sc, sp = tonumber(sw), tonumber(sc), tonumber(sp)
      out[#out + 1] = 1
      out[#out + 1] = sw
      out[#out + 1] = sc
      out[#out + 1] = sp
      if sw == w then
        curr, prev = sc, sp
      elseif sw == w - 1 then
        prev = sc
      end
    else
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
    local elapsed = now - w * period
    local est = prev * ((period - elapsed) / period) + curr
    if est + cost <= limit or (curr == 0 and prev == 0) then
      new[i] = {w, curr + cost, prev}
    else
      ok = false
    end
  end
end
if ok then
  out[1] = 1
  for i = 1, #KEYS do
    local b = (i - 1) * 6
    local n = new[i]
    if ARGV[b + 1] == 'g' then
      redis.call('SET', KEYS[i], string.format('%d', n[1]), 'PX', math.floor((n[1] - now) / 1000) + 1000)
    else
      local period = tonumber(ARGV[b + 6])
      local value = string.format('%d:%d:%d', n[1], n[2], n[3])
      redis.call('SET', KEYS[i], value, 'PX', math.floor(((n[1] + 2) * period - now) / 1000) + 1000)
    end
  end
end
return out
