-- ferrogate rate limits: correct earlier charges (a token reservation reconciled with the usage).
-- KEYS: the counters. ARGV, 3 per key: algo ('g' | 'w'), amount, window.
--   GCRA: amount is µs to move the theoretical arrival time back (negative: forward).
--   Window: amount is units to give back (negative: to charge) in window `window` of the charge,
--   applied only while that window is the stored current or previous one.
-- A counter that expired meanwhile is left alone (it reads as empty already).
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local amount = tonumber(ARGV[b + 2])
  if ARGV[b + 1] == 'g' then
    local v = redis.call('HGET', KEYS[i], 't')
    if v then
      local tat = tonumber(v) - amount
      redis.call('HSET', KEYS[i], 't', tat)
      if tat > now then
        redis.call('PEXPIRE', KEYS[i], math.floor((tat - now) / 1000) + 1000)
      end
    end
  else
    local v = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
    if v[1] then
      local sw, w0 = tonumber(v[1]), tonumber(ARGV[b + 3])
      if sw == w0 then
        redis.call('HSET', KEYS[i], 'c', math.max(0, tonumber(v[2]) - amount))
      elseif sw == w0 + 1 then
        redis.call('HSET', KEYS[i], 'p', math.max(0, tonumber(v[3]) - amount))
      end
    end
  end
end
return 1
