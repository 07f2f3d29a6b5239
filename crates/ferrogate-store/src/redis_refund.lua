-- ferrogate rate limits: correct earlier charges (a token reservation reconciled with the usage).
-- KEYS: the counters. ARGV, 3 per key: algo ('g' | 'w'), amount, window.
--   GCRA: amount is µs to move the theoretical arrival time back (negative: forward).
--   Window: amount is units to give back (negative: to charge) in window `window` of the charge,
--   applied only while that window is the stored current or previous one.
-- Counters are strings as redis_acquire.lua keeps them; one MGET reads them all.
-- A counter that expired meanwhile is left alone (it reads as empty already).
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local amount = tonumber(ARGV[b + 2])
  local v = stored[i]
  if v and ARGV[b + 1] == 'g' then
    local tat = tonumber(v)
    if tat then
      tat = tat - amount
      if tat > now then
        redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
      else
        redis.call('SET', KEYS[i], string.format('%d', tat), 'KEEPTTL')
      end
    end
  elseif v then
    local sw, sc, sp = string.match(v, '^(%-?%d+):(%d+):(%d+)$')
    if sw then
      sw, sc, sp = tonumber(sw), tonumber(sc), tonumber(sp)
      local w0 = tonumber(ARGV[b + 3])
      if sw == w0 then
        sc = math.max(0, sc - amount)
      elseif sw == w0 + 1 then
        sp = math.max(0, sp - amount)
      end
      redis.call('SET', KEYS[i], string.format('%d:%d:%d', sw, sc, sp), 'KEEPTTL')
    end
  end
end
return 1
