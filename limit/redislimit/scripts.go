package redislimit

import "github.com/redis/go-redis/v9"

// The scripts run inside Redis, each atomically: no other command of any
// node runs between their reads and their writes, which is what makes
// counting exact across nodes.
//
// Lua numbers in Redis are doubles, exact only up to 2^53. Nanoseconds
// since 1970 (about 2·10^18) are not, so every instant crosses into a
// script as whole seconds and nanoseconds (0 ≤ ns < 10^9), and a GCRA
// instant as those plus a remainder in units of 1/limit ns; the scripts
// only add and compare such triples, with carries, which is exact. Counts
// (quota used, balances, costs) are at most 2^53 (latchkey.ValidateQuota).
// Numbers are written back with %d, never Lua's default %.14g.
//
// Keys (P is Options.Prefix):
//
//	P k:<key id>   hash: the key's rate windows and quota counter
//	P c:<key id>   sorted set: the key's leases, scored by expiry (ms)
//	P x:<key id>   hash: lease id → exact expiry "s ns"
//	P L:<lease id> string: "key-id s ns", the lease's holder and expiry
//	P dirty        set: key ids with quota consumption not yet flushed
//	P k:owner:<tenant>:<owner id>
//	               hash: an owner's shared rate windows and quota counter
//	               (latchkey.OwnerQuotaID), fields as a key's
//
// Fields of P k:<id>: wn (number of windows) and w1…wn ("limit/period|s|ns|rem",
// the window's settings and its TAT); d (the quota's definition: "b" for a
// balance, "p:<period>:<anchor ns>" for a periodic quota), e (the stored
// row's epoch), ps (the period's start in µs, "" for a balance), u (used),
// rv (a balance's reservation: what the store is known to hold), st (set
// by Forget: read the stored row again), lk/lku (the reservation lock's
// owner and its end in ms), ch/rat (the last reservation's size and when
// it was made, in ms).

// admitScript decides a request (ARGV[1] "a") or reads the quota (ARGV[1]
// "q"). KEYS: the key's state hash, lease set, lease expiries, lease
// mapping (the state hash again when no lease is wanted), dirty set, the
// owner's state hash (the key's again when the key has no owner limits).
// ARGV: see (*Limiter).build. Replies:
//
//	{0, code, used, ps, firstLeaseS, firstLeaseNs, nw, s1, ns1, rem1, …,
//	 ownerUsed, ownerPs, ownerNw, s1, ns1, rem1, …}
//	    decided; code 0 admitted, 1 rate, 2 quota, 3 concurrency; the
//	    key's and then the owner's windows' TATs after the decision
//	{1, "k" or "o"} the key's (or the owner's) quota counter is missing
//	    or stale: read the stored row and call again with it
//	{2, need, epoch, rv, used, chunk, ratMs} a balance needs a larger
//	    reservation; the caller now holds the key's reservation lock
//	{3} another reservation of this key is in flight: wait, call again
//
// The key's limits and its owner's are two sections of the same layout,
// decided together: a request is admitted only if both allow it, and a
// request denied by either changes neither.
var admitScript = redis.NewScript(`
local function fmt(x) return string.format('%d', x) end
local function lt(as, an, bs, bn) return as < bs or (as == bs and an < bn) end
local mode = ARGV[1]
local nowS, nowN = tonumber(ARGV[2]), tonumber(ARGV[3])
local nowMs = nowS * 1000 + math.floor(nowN / 1000000)
local cost = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local pos = 5
local function arg() pos = pos + 1; return ARGV[pos] end

-- section reads one section's arguments (active flag, windows, quota,
-- id) and checks its windows (GCRA: next = max(TAT, now) + cost·T;
-- allowed if next - now <= period, with a remainder strictly less) and
-- its quota. It returns nil when the quota counter must be read first.
local function section(h)
  local s = {h = h, ws = {}, rateOK = true, quotaOK = true, used = 0, ps = '', epoch = '', rv = 0}
  s.active = arg() == '1'
  local nw = tonumber(arg())
  s.nw = nw
  local same = nw > 0 and redis.call('HGET', h, 'wn') == tostring(nw)
  for i = 1, nw do
    local id, L = arg(), tonumber(arg())
    local pS, pN = tonumber(arg()), tonumber(arg())
    local sS, sN, sR = tonumber(arg()), tonumber(arg()), tonumber(arg())
    local tS, tN, tR = nowS, nowN, 0
    if same then
      local v = redis.call('HGET', h, 'w' .. i)
      if v then
        local vid, a, c, d = string.match(v, '^(.-)|(%-?%d+)|(%d+)|(%d+)$')
        if vid == id then tS, tN, tR = tonumber(a), tonumber(c), tonumber(d) end
      end
    end
    local xS, xN, xR = tS, tN, tR
    if lt(tS, tN, nowS, nowN) then xS, xN, xR = nowS, nowN, 0 end
    local nS, nN, nR = xS + sS, xN + sN, xR + sR
    if nR >= L then nR = nR - L; nN = nN + 1 end
    if nN >= 1000000000 then nN = nN - 1000000000; nS = nS + 1 end
    local lS, lN = nowS + pS, nowN + pN
    if lN >= 1000000000 then lN = lN - 1000000000; lS = lS + 1 end
    if lt(lS, lN, nS, nN) or (lS == nS and lN == nN and nR > 0) then s.rateOK = false end
    s.ws[i] = {id, tS, tN, tR, nS, nN, nR}
  end
  s.qkind, s.def, s.curps, s.qlimit, s.qttl = arg(), arg(), arg(), tonumber(arg()), tonumber(arg())
  local load, re, rps, ru = arg(), arg(), arg(), arg()
  s.reserve = arg()
  s.id = arg()
  if s.qkind ~= '' then
    local q = redis.call('HMGET', h, 'd', 'e', 'ps', 'u', 'rv', 'st')
    if (not q[1]) or q[6] then
      if load ~= '1' then return nil end
      if q[1] and q[2] == re then
        -- No reset since the counter was loaded: it is still right,
        -- consumption not yet flushed included.
        redis.call('HDEL', h, 'st')
      else
        -- A reservation a crashed node never spent counts as spent.
        redis.call('HSET', h, 'd', s.def, 'e', re, 'ps', rps, 'u', ru, 'rv', ru)
        redis.call('HDEL', h, 'st', 'lk', 'lku', 'ch', 'rat')
      end
      q = redis.call('HMGET', h, 'd', 'e', 'ps', 'u', 'rv', 'st')
    end
    s.epoch, s.ps, s.used, s.rv = q[2], q[3], tonumber(q[4]), tonumber(q[5] or '0')
    if q[1] ~= s.def then
      -- A quota other than the one counted: count anew.
      s.used, s.rv = 0, 0
      if s.qkind == 'b' then s.ps = '' else s.ps = s.curps end
      redis.call('HSET', h, 'd', s.def, 'ps', s.ps, 'u', '0', 'rv', '0')
    elseif s.qkind == 'p' and s.ps ~= s.curps and tonumber(s.curps) > tonumber(s.ps) then
      -- A new period starts from zero. (A now before the counted period
      -- is a caller whose clock lags: it counts in the later period.)
      s.used, s.ps = 0, s.curps
      redis.call('HSET', h, 'ps', s.ps, 'u', '0')
    end
    if cost > s.qlimit - s.used then s.quotaOK = false end
  end
  return s
end

-- ttl is how long the section's hash matters: until its last window is
-- full again, or its quota counter's idle time.
local function ttl(s)
  local t = 0
  for i = 1, s.nw do
    local w = s.ws[i]
    local left = (w[2] - nowS) * 1000 + math.floor((w[3] - nowN) / 1000000) + 1
    if left > t then t = left end
  end
  return math.max(t, s.qttl) + slack
end

local K = section(KEYS[1])
if not K then return {1, 'k'} end
if mode == 'q' then
  if K.qkind ~= '' then redis.call('PEXPIRE', K.h, fmt(K.qttl + slack)) end
  return {0, 0, K.used, K.ps, 0, 0, 0}
end
local O = section(KEYS[6])
if not O then return {1, 'o'} end

-- Concurrency: the set holds leases by expiry in ms; an exact expiry
-- decides within the millisecond of now.
local maxc = tonumber(arg())
local leaseID, les, len, lttl = arg(), arg(), arg(), tonumber(arg())
local token, lockMs = arg(), tonumber(arg())
local concOK = true
local fS, fN = 0, 0
if maxc > 0 then
  local z, x = KEYS[2], KEYS[3]
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. fmt(nowMs))
  if #dead > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. fmt(nowMs))
    redis.call('HDEL', x, unpack(dead))
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, fmt(nowMs), fmt(nowMs))) do
    local v = redis.call('HGET', x, id)
    local live = false
    if v then
      local es, en = string.match(v, '^(%-?%d+) (%d+)$')
      live = lt(nowS, nowN, tonumber(es), tonumber(en))
    end
    if not live then redis.call('ZREM', z, id); redis.call('HDEL', x, id) end
  end
  if redis.call('ZCARD', z) >= maxc then
    concOK = false
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    local best = false
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, first[2], first[2])) do
      local v = redis.call('HGET', x, id)
      local es, en
      if v then
        local a, c = string.match(v, '^(%-?%d+) (%d+)$')
        es, en = tonumber(a), tonumber(c)
      else
        local ms = tonumber(first[2])
        es, en = math.floor(ms / 1000), (ms % 1000) * 1000000
      end
      if not best or lt(es, en, fS, fN) then fS, fN, best = es, en, true end
    end
  end
end

local code = 0
if not (K.rateOK and O.rateOK) then code = 1
elseif not (K.quotaOK and O.quotaOK) then code = 2
elseif not concOK then code = 3 end

if code == 0 and K.qkind == 'b' and K.reserve == '1' and K.used + cost > K.rv then
  -- Spend no credit the store does not hold as reserved: reserve first.
  local lk = redis.call('HMGET', K.h, 'lk', 'lku', 'ch', 'rat')
  if lk[1] and tonumber(lk[2]) > nowMs then return {3} end
  redis.call('HSET', K.h, 'lk', token, 'lku', fmt(nowMs + lockMs))
  return {2, K.used + cost - K.rv, K.epoch, K.rv, K.used, tonumber(lk[3] or '0'), tonumber(lk[4] or '0')}
end

-- commit writes a section's windows and quota (admitted) and its TTL.
local function commit(s, admitted)
  if admitted then
    if s.nw > 0 then
      local args = {'wn', tostring(s.nw)}
      for i = 1, s.nw do
        local w = s.ws[i]
        w[2], w[3], w[4] = w[5], w[6], w[7]
        args[#args + 1] = 'w' .. i
        args[#args + 1] = w[1] .. '|' .. fmt(w[2]) .. '|' .. fmt(w[3]) .. '|' .. fmt(w[4])
      end
      redis.call('HSET', s.h, unpack(args))
    elseif redis.call('HEXISTS', s.h, 'wn') == 1 then
      redis.call('HDEL', s.h, 'wn')
    end
    if s.qkind ~= '' and cost > 0 then
      s.used = s.used + cost
      redis.call('HSET', s.h, 'u', fmt(s.used))
      if s.qkind == 'p' then redis.call('SADD', KEYS[5], s.id) end
    end
  end
  if s.qkind ~= '' or s.nw > 0 then redis.call('PEXPIRE', s.h, fmt(ttl(s))) end
end

if K.active then commit(K, code == 0) end
if O.active then commit(O, code == 0) end

local reply = {0, code, K.used, K.ps, fS, fN, K.nw}
for _, s in ipairs({K, O}) do
  if s == O then
    reply[#reply + 1] = O.used
    reply[#reply + 1] = O.ps
    reply[#reply + 1] = O.nw
  end
  for i = 1, s.nw do
    local w = s.ws[i]
    reply[#reply + 1] = w[2]
    reply[#reply + 1] = w[3]
    reply[#reply + 1] = w[4]
  end
end

if code == 0 and maxc > 0 then
  local z, x = KEYS[2], KEYS[3]
  local ems = tonumber(les) * 1000 + math.floor(tonumber(len) / 1000000)
  local life = lttl + slack
  redis.call('ZADD', z, fmt(ems), leaseID)
  redis.call('HSET', x, leaseID, les .. ' ' .. len)
  redis.call('SET', KEYS[4], K.id .. ' ' .. les .. ' ' .. len, 'PX', fmt(life))
  for _, k in ipairs({z, x}) do
    if redis.call('PTTL', k) < life then redis.call('PEXPIRE', k, fmt(life)) end
  end
end
return reply
`)

// raiseScript ends a reservation: if the counter still has the epoch
// (ARGV[1]) the reservation was made in, its rv becomes at least ARGV[2]
// (a figure the store holds); ARGV[3] "stale" marks the counter stale
// instead (the stored epoch moved on); ARGV[5], ARGV[6] record the
// reservation's size and time. The lock is released if ARGV[4] holds it.
// KEYS: the state hash.
var raiseScript = redis.NewScript(`
local h = KEYS[1]
local q = redis.call('HMGET', h, 'e', 'rv', 'lk')
if q[1] and q[1] == ARGV[1] then
  if ARGV[3] == 'stale' then
    redis.call('HSET', h, 'st', '1')
  elseif tonumber(ARGV[2]) > tonumber(q[2] or '0') then
    redis.call('HSET', h, 'rv', ARGV[2], 'ch', ARGV[5], 'rat', ARGV[6])
  end
end
if q[3] and q[3] == ARGV[4] then redis.call('HDEL', h, 'lk', 'lku') end
return 1
`)

// giveBackScript takes back a balance's unspent reservation: rv becomes u,
// so that no node spends beyond what was spent until a new reservation,
// and the caller takes the reservation lock (ARGV[1], until ARGV[2] ms) for
// the store write that follows. Reply: {epoch, used, old rv}, or {} when
// there is nothing to give back or a reservation is in flight.
var giveBackScript = redis.NewScript(`
local h = KEYS[1]
local q = redis.call('HMGET', h, 'd', 'e', 'u', 'rv', 'st', 'lk', 'lku')
if q[1] ~= 'b' or q[5] or not q[4] or tonumber(q[4]) <= tonumber(q[3]) then return {} end
if q[6] and tonumber(q[7]) > tonumber(ARGV[3]) then return {} end
redis.call('HSET', h, 'rv', q[3], 'lk', ARGV[1], 'lku', ARGV[2])
return {q[2], tonumber(q[3]), tonumber(q[4])}
`)

// staleScript marks a counter stale if its epoch is still ARGV[1] (or
// whatever its epoch, when ARGV[1] is ""): the next request reads the
// stored row again. KEYS: the state hash.
var staleScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'e')
if e and (ARGV[1] == '' or e == ARGV[1]) then redis.call('HSET', KEYS[1], 'st', '1') end
return 1
`)

// releaseScript ends a lease: it removes the mapping (ARGV[1] is the
// prefix of the key's lease keys) and frees the key's slot. Reply: "" if
// the lease was unknown, else "key-id s ns" as it was.
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return '' end
redis.call('DEL', KEYS[1])
local kid = string.match(v, '^(.*) %-?%d+ %d+$')
if kid then
  redis.call('ZREM', ARGV[1] .. 'c:' .. kid, ARGV[2])
  redis.call('HDEL', ARGV[1] .. 'x:' .. kid, ARGV[2])
end
return v
`)
