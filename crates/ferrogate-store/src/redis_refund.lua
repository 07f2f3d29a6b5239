-- ferrogate rate limits: correct earlier charges (a token reservation reconciled with the usage).
-- KEYS: the subjects, as redis_acquire.lua keeps them (a key may be named more than once).
-- ARGV, 4 per key: algo ('g' | 'w'), slot (0 requests | 1 tokens), amount, window.
--   GCRA: amount is µs to move the theoretical arrival time back (negative: forward).
--   Window: amount is units to give back (negative: to charge) in window `window` of the charge,
--   applied only while that window is the stored current or previous one.
-- One MGET reads every key, one SET writes each key changed, keeping its TTL unless a counter
-- moved forward past the stored expiry. A key that expired meanwhile, a counter never charged,
-- and a value of another algorithm or layout are left alone (they read as empty already).
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local stored = redis.call('MGET', unpack(KEYS))
local vals = {}
local changed = {}
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local algo = ARGV[b + 1]
  local key = KEYS[i]
  local v = vals[key]
  if v == nil then
    v = false
    local s = stored[i]
    if s then
      local e, r1, r2, r3, t1, t2, t3
      if algo == 'g' then
        e, r1, t1 = string.match(s, '^g:(%d+):(%-?%d+):(%-?%d+)$')
        r2, r3, t2, t3 = 0, 0, 0, 0
      else
        e, r1, r2, r3, t1, t2, t3 = string.match(s, '^w:(%d+):(%-?%d+):(%d+):(%d+):(%-?%d+):(%d+):(%d+)$')
      end
      if e then
        v = {tonumber(e), tonumber(r1), tonumber(r2), tonumber(r3), tonumber(t1), tonumber(t2), tonumber(t3), algo}
      end
    end
    vals[key] = v
  end
  if v and v[8] == algo then
    local k = 2 + tonumber(ARGV[b + 2]) * 3
    local amount = tonumber(ARGV[b + 3])
    if algo == 'g' then
      if v[k] ~= 0 then
        v[k] = v[k] - amount
        changed[#changed + 1] = key
      end
    else
      local w0 = tonumber(ARGV[b + 4])
      if v[k] == w0 then
        v[k + 1] = math.max(0, v[k + 1] - amount)
        changed[#changed + 1] = key
      elseif v[k] == w0 + 1 then
        v[k + 2] = math.max(0, v[k + 2] - amount)
        changed[#changed + 1] = key
      end
    end
  end
end
local written = {}
for _, key in ipairs(changed) do
  if not written[key] then
    written[key] = true
    local v = vals[key]
    -- Only a GCRA counter moved forward can outgrow the stored expiry.
    local need = 0
    if v[8] == 'g' then
      need = now_ms + math.floor((math.max(v[2], v[5]) - now) / 1000) + 1000
    end
    local keep = need <= v[1]
    if not keep then
      v[1] = need + math.max(need - now_ms, 10000)
    end
    local value
    if v[8] == 'g' then
      value = string.format('g:%d:%d:%d', v[1], v[2], v[5])
    else
      value = string.format('w:%d:%d:%d:%d:%d:%d:%d', v[1], v[2], v[3], v[4], v[5], v[6], v[7])
    end
    if keep then
      redis.call('SET', key, value, 'KEEPTTL')
    else
      redis.call('SET', key, value, 'PX', v[1] - now_ms)
    end
  end
end
return 1
