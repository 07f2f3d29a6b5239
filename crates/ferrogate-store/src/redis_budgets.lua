-- ferrogate shared budgets and in-flight caps: one script, three operations (ARGV[1]).
-- Time is Redis's own (TIME); ARGV[2] overrides it when not 0 (tests of the calendar only).
-- Mirrors ferrogate-core's tenancy::quota (same checks, same order, `used < limit` admits).
--
-- Per owner (a key or a tenant) two Redis keys:
--   the hash  b: d, dt, du (day start ms, day tokens, day micro-USD: used + reserved),
--                m, mt, mu (the same for the month), and one field per request in flight,
--                'L<lease>' = '<tokens>:<micro-usd>:<day>:<month>' (its reservation);
--   the zset  i: the leases in flight, scored by their expiry (ms).
-- A hash without 'd' is unseeded: the gateway seeds it from the ledger first.
--
-- 'admit' KEYS b1 i1 b2 i2 ...; ARGV op, now, lease, demand tokens, demand micro-USD, lease ttl
--   ms, then per owner 5 numbers: in-flight cap, day tokens, month tokens, day micro-USD,
--   month micro-USD (-1: none). Returns {0, now, day, month} admitted, {1, now, day, month,
--   owner, which, used} refused (which 0: in flight, 1-4: the budgets), {2, now, day, month,
--   owners...} unseeded.
-- 'settle' KEYS as admit; ARGV op, now, lease, actual tokens, actual micro-USD, day, month.
-- 'seed' KEYS b; ARGV op, now, day, month, dt, du, mt, mu. Returns 1 if seeded, 0 if present.
-- 'correct' KEYS b i; ARGV op, now, day, month, dt, du, mt, mu (the ledger's). Returns 1 if raised.
-- 'usage' KEYS b i; ARGV op, now. Returns {} unseeded, else {day, dt, du, month, mt, mu, inflight}.
if redis.replicate_commands then
  redis.replicate_commands()
end
local call, floor, tonumber, format = redis.call, math.floor, tonumber, string.format
local DAY = 86400000
-- Hashes outlive a month; leases are purged by expiry as well.
local KEEP = 40 * DAY

local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == 0 then
  local t = call('TIME')
  now = t[1] * 1000 + floor(t[2] / 1000)
end
-- Howard Hinnant's civil_from_days, to the first day of the month (as core's tenancy::time).
local function month_start(ms)
  local z = floor(ms / DAY) + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  return (z - doy + floor((153 * mp + 2) / 5) - 719468) * DAY
end
local day = now - now % DAY
local month = month_start(now)
local function n(x)
  return format('%d', x)
end
local function dec(a, b)
  local v = a - b
  if v < 0 then
    return 0
  end
  return v
end

-- The hash's counters rolled to the current windows, or nil if unseeded.
local function read(b)
  local v = call('HMGET', b, 'd', 'dt', 'du', 'm', 'mt', 'mu')
  if not v[1] then
    return nil
  end
  local s = {d = tonumber(v[1]), dt = tonumber(v[2]) or 0, du = tonumber(v[3]) or 0,
             m = tonumber(v[4]) or 0, mt = tonumber(v[5]) or 0, mu = tonumber(v[6]) or 0}
  if s.d ~= day then
    s.d, s.dt, s.du = day, 0, 0
  end
  if s.m ~= month then
    s.m, s.mt, s.mu = month, 0, 0
  end
  return s
end

local function write(b, s)
  call('HSET', b, 'd', n(s.d), 'dt', n(s.dt), 'du', n(s.du), 'm', n(s.m), 'mt', n(s.mt), 'mu', n(s.mu))
  call('PEXPIRE', b, KEEP)
end

-- Ends a lease: its reservation leaves the windows it was charged to (if still current), and
-- `at`/`au` (what was used) go into the request's windows `rd`/`rm` (if still current).
local function finish(b, i, s, lease, at, au, rd, rm)
  local f = call('HGET', b, 'L' .. lease)
  local t, u = 0, 0
  if f then
    local a, c, d, m = string.match(f, '^(%d+):(%d+):(%-?%d+):(%-?%d+)$')
    if a then
      t, u, rd, rm = tonumber(a), tonumber(c), tonumber(d), tonumber(m)
    end
    call('HDEL', b, 'L' .. lease)
  end
  call('ZREM', i, lease)
  if s then
    if s.d == rd then
      s.dt, s.du = dec(s.dt, t) + at, dec(s.du, u) + au
    end
    if s.m == rm then
      s.mt, s.mu = dec(s.mt, t) + at, dec(s.mu, u) + au
    end
  end
end

-- Leases past their expiry: requests that never settled (their replica died).
local function purge(b, i, s)
  local dead = call('ZRANGEBYSCORE', i, '-inf', now)
  for _, lease in ipairs(dead) do
    finish(b, i, s, lease, 0, 0, 0, 0)
  end
  return #dead
end

local owners = #KEYS / 2

if op == 'admit' then
  local lease, dt, du, ttl = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local states, unseeded = {}, {2, now, day, month}
  for o = 1, owners do
    local b, i = KEYS[2 * o - 1], KEYS[2 * o]
    local s = read(b)
    if s then
      if purge(b, i, s) > 0 then
        write(b, s)
      end
    else
      unseeded[#unseeded + 1] = o - 1
    end
    states[o] = s
  end
  if #unseeded > 4 then
    return unseeded
  end
  for o = 1, owners do
    local s, a = states[o], 6 + (o - 1) * 5
    local cap = tonumber(ARGV[a + 1])
    if cap >= 0 then
      local inflight = call('ZCARD', KEYS[2 * o])
      if inflight >= cap then
        return {1, now, day, month, o - 1, 0, inflight}
      end
    end
    local used = {s.dt, s.mt, s.du, s.mu}
    for k = 1, 4 do
      local limit = tonumber(ARGV[a + 1 + k])
      if limit >= 0 and used[k] >= limit then
        return {1, now, day, month, o - 1, k, used[k]}
      end
    end
  end
  local reservation = n(dt) .. ':' .. n(du) .. ':' .. n(day) .. ':' .. n(month)
  for o = 1, owners do
    local b, i, s = KEYS[2 * o - 1], KEYS[2 * o], states[o]
    s.dt, s.du, s.mt, s.mu = s.dt + dt, s.du + du, s.mt + dt, s.mu + du
    write(b, s)
    call('HSET', b, 'L' .. lease, reservation)
    call('ZADD', i, n(now + ttl), lease)
    call('PEXPIRE', i, ttl + DAY)
  end
  return {0, now, day, month}
elseif op == 'settle' then
  local lease, at, au = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local rd, rm = tonumber(ARGV[6]), tonumber(ARGV[7])
  for o = 1, owners do
    local b, i = KEYS[2 * o - 1], KEYS[2 * o]
    local s = read(b)
    finish(b, i, s, lease, at, au, rd, rm)
    if s then
      write(b, s)
    end
  end
  return 1
elseif op == 'seed' then
  local b = KEYS[1]
  if call('HEXISTS', b, 'd') == 1 then
    return 0
  end
  if tonumber(ARGV[3]) ~= day or tonumber(ARGV[4]) ~= month then
    -- Read for windows that have since ended: seed nothing, the caller asks again.
    return 0
  end
  write(b, {d = day, dt = tonumber(ARGV[5]), du = tonumber(ARGV[6]),
            m = month, mt = tonumber(ARGV[7]), mu = tonumber(ARGV[8])})
  return 1
elseif op == 'correct' then
  local b, i = KEYS[1], KEYS[2]
  local s = read(b)
  if not s then
    return 0
  end
  -- What is settled = counted minus the reservations of the leases in flight.
  local rdt, rdu, rmt, rmu = 0, 0, 0, 0
  for _, lease in ipairs(call('ZRANGE', i, 0, -1)) do
    local f = call('HGET', b, 'L' .. lease)
    if f then
      local a, c, d, m = string.match(f, '^(%d+):(%d+):(%-?%d+):(%-?%d+)$')
      if a and tonumber(d) == day then
        rdt, rdu = rdt + tonumber(a), rdu + tonumber(c)
      end
      if a and tonumber(m) == month then
        rmt, rmu = rmt + tonumber(a), rmu + tonumber(c)
      end
    end
  end
  local raised = 0
  local function raise(field, reserved, ledger, window)
    if window and s[field] - reserved < ledger then
      s[field], raised = ledger + reserved, 1
    end
  end
  raise('dt', rdt, tonumber(ARGV[5]), tonumber(ARGV[3]) == day)
  raise('du', rdu, tonumber(ARGV[6]), tonumber(ARGV[3]) == day)
  raise('mt', rmt, tonumber(ARGV[7]), tonumber(ARGV[4]) == month)
  raise('mu', rmu, tonumber(ARGV[8]), tonumber(ARGV[4]) == month)
  if raised == 1 then
    write(b, s)
  end
  return raised
elseif op == 'usage' then
  local s = read(KEYS[1])
  if not s then
    return {}
  end
  return {s.d, s.dt, s.du, s.m, s.mt, s.mu, call('ZCOUNT', KEYS[2], now, '+inf')}
end
return redis.error_reply('unknown operation')
