//! The Lua scripts of the Redis store. Each runs atomically on one Redis (Cluster) slot:
//! every key it names carries the same `{sNNNN}` hash tag, including the keys it builds
//! from a prefix argument (a decision id names its slot, so its key shares the tag).
//!
//! Money is exact: amounts are Lua numbers (doubles), exact for every integer below 2^53,
//! and no sum a script makes passes twice `Fen::MAX` (an amount plus an amount), which the
//! assertion below holds below 2^53. Numbers go back to Redis and to the gateway as strings
//! formatted with `%.0f` (Redis would write a large double in exponent notation).

use risk_core::Fen;

const _: () = assert!(
    2 * Fen::MAX.get() < 1 << 53,
    "the commit script adds two amounts as Lua doubles"
);

/// The Lua function `view(user key, approvals key, now ms)` every script that answers a
/// user's state calls: the user hash's fields (none for an unknown user) followed by two
/// more, `n24` (the sliding `drawdowns_24h`) and `n24_until` (ms; when that count next
/// changes as time passes, `-1` for never).
///
/// The hash's `drawdowns_24h` is the upstream count set with the state, counted until its
/// `up_until` (24 hours after it was set); a state written before `up_until` existed keeps
/// its count until the next reservation sets `up_until` 24 hours on (that count was never
/// below the true one, so it may refuse, never approve, too much for one more day). The
/// approvals zset holds one member per approval (its decision id) scored by its unix second:
/// an approval counts while it is younger than 24 hours, as in the memory store.
macro_rules! view_fn {
    () => {
        r"
local function view(ukey, akey, now)
  local u = redis.call('HGETALL', ukey)
  if #u == 0 then return u end
  local up, up_until = 0, nil
  for i = 1, #u, 2 do
    if u[i] == 'drawdowns_24h' then up = tonumber(u[i + 1])
    elseif u[i] == 'up_until' then up_until = tonumber(u[i + 1]) end
  end
  local since = math.floor(now / 1000) - 86400
  local n = redis.call('ZCOUNT', akey, '(' .. since, '+inf')
  local stable = -1
  if up > 0 and (not up_until or now < up_until) then
    n = n + up
    if up_until then stable = up_until end
  end
  if n > 0 then
    local first = redis.call('ZRANGEBYSCORE', akey, '(' .. since, '+inf', 'WITHSCORES',
      'LIMIT', 0, 1)
    if first[2] then
      local ends = (tonumber(first[2]) + 86400) * 1000
      if stable < 0 or ends < stable then stable = ends end
    end
  end
  u[#u + 1] = 'n24'
  u[#u + 1] = string.format('%.0f', n)
  u[#u + 1] = 'n24_until'
  u[#u + 1] = string.format('%.0f', stable)
  return u
end
"
    };
}

/// `load`: the user's state and, when a key is given, its record and decision.
///
/// KEYS: user, approvals, [idem]. ARGV: decision key prefix, now (ms).
/// Returns `{view}` or `{view, fingerprint, decision_id, json|nil, available|nil}`.
pub(super) const LOAD: &str = concat!(
    view_fn!(),
    r"
local user = view(KEYS[1], KEYS[2], tonumber(ARGV[2]))
if #user == 0 or not KEYS[3] then return {user} end
local seen = redis.call('HMGET', KEYS[3], 'fp', 'decision')
if not seen[1] then return {user} end
local d = redis.call('HMGET', ARGV[1] .. seen[2], 'json', 'available')
return {user, seen[1], seen[2], d[1], d[2]}
"
);

/// `commit`: the whole drawdown commit in one atomic step.
///
/// KEYS: user, idem, idem expiry index, decision, audit stream, approvals.
/// ARGV: 1 fingerprint, 2 decision id, 3 decision json, 4 amount, 5 ceiling ('' when
/// nothing is reserved), 6 now (ms), 7 record expiry (ms), 8 record TTL (ms), 9 decision TTL
/// (ms), 10 user id, 11 appealable ('1' / '0'), 12 decision key prefix, 13 caller, 14 the
/// user's version the decision was evaluated at ('' when unchecked), then the audit event's
/// other values: 15 idempotency key, 16 outcome, 17 threshold version, 18 policy,
/// 19 evaluated at.
///
/// The user's version `v` counts its writes: a reservation bumps it (as an upsert does), so a
/// checked commit lands only on the state it was evaluated against, and answers the fresh
/// state (`line_changed`) otherwise. A replay or a refused key is answered before the
/// version is looked at: the first commit of that key decided already.
/// An approval is added to the user's approvals (scored by its second under `now`), and
/// those 24 hours old are dropped; the set expires a day after its last approval (wall
/// time: Redis's own clock), when none of it counts any more.
/// Returns `{'committed', available, version}`, `{'replayed', json, available}`,
/// `{'key_reused'}`, `{'user_not_found'}`, `{'line_changed', view}`,
/// `{'duplicate_id'}` or `{'corrupt', decision id}`.
pub(super) const COMMIT: &str = concat!(
    view_fn!(),
    r"
local now = tonumber(ARGV[6])
local st = redis.call('HMGET', KEYS[1], 'limit', 'used', 'v', 'up_until')
if not st[1] then return {'user_not_found'} end
local seen = redis.call('HMGET', KEYS[2], 'fp', 'decision', 'exp')
if seen[1] and tonumber(seen[3]) > now then
  if seen[1] ~= ARGV[1] then return {'key_reused'} end
  local d = redis.call('HMGET', ARGV[12] .. seen[2], 'json', 'available')
  if not d[1] then return {'corrupt', seen[2]} end
  return {'replayed', d[1], d[2]}
end
local v = st[3] or '0'
if ARGV[14] ~= '' and ARGV[14] ~= v then
  return {'line_changed', view(KEYS[1], KEYS[6], now)}
end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'duplicate_id'} end
local limit, used = tonumber(st[1]), tonumber(st[2])
if ARGV[5] ~= '' then
  local new_used = used + tonumber(ARGV[4])
  if new_used > tonumber(ARGV[5]) or new_used > limit then
    return {'line_changed', view(KEYS[1], KEYS[6], now)}
  end
  used = new_used
  v = string.format('%.0f', tonumber(v) + 1)
  redis.call('HSET', KEYS[1], 'used', string.format('%.0f', used), 'v', v)
  if not st[4] then
    redis.call('HSET', KEYS[1], 'up_until', string.format('%.0f', now + 86400000))
  end
  local sec = math.floor(now / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', sec - 86400)
  redis.call('ZADD', KEYS[6], sec, ARGV[2])
  redis.call('PEXPIRE', KEYS[6], 90000000)
end
local available = '0'
if used < limit then available = string.format('%.0f', limit - used) end
used = string.format('%.0f', used)
redis.call('HSET', KEYS[4], 'json', ARGV[3], 'available', available, 'user', ARGV[10],
  'appealable', ARGV[11], 'caller', ARGV[13])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('HSET', KEYS[2], 'fp', ARGV[1], 'decision', ARGV[2], 'exp', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[7], KEYS[2])
redis.call('XADD', KEYS[5], '*', 'decision_id', ARGV[2], 'user', ARGV[10], 'caller', ARGV[13],
  'idempotency_key', ARGV[15], 'outcome', ARGV[16], 'amount_fen', ARGV[4],
  'threshold_version', ARGV[17], 'policy', ARGV[18], 'evaluated_at', ARGV[19],
  'used_fen', used, 'available_fen', available)
return {'committed', available, v}
"
);

/// `upsert_user`: replaces the state's fields, keeping nothing of the old state but its
/// version, which it moves past both the old version and Redis's clock in microseconds: a
/// commit evaluated against the old state is refused, and a user stored again after Redis lost
/// its data never comes back at a version an instance may still keep for the lost state
/// (reservations add one each, far fewer than a microsecond each). The new state's
/// `drawdowns_24h` replaces the approvals counted so far, and counts until `up_until`.
///
/// KEYS: user, approvals. ARGV: now (ms), up_until (ms), then field/value pairs.
/// Returns the view.
pub(super) const UPSERT: &str = concat!(
    view_fn!(),
    r"
local t = redis.call('TIME')
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') + 1
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now > v then v = now end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', v), 'up_until', ARGV[2],
  unpack(ARGV, 3))
return view(KEYS[1], KEYS[2], tonumber(ARGV[1]))
"
);

/// `purge_expired` for one slot: drops records whose logical expiry is at or before now.
///
/// KEYS: idem expiry index. ARGV: now (ms), most records to look at.
pub(super) const PURGE: &str = r"
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local n = 0
for _, k in ipairs(due) do
  local exp = redis.call('HGET', k, 'exp')
  if exp and tonumber(exp) <= now then n = n + redis.call('DEL', k) end
  redis.call('ZREM', KEYS[1], k)
end
return n
";

/// `create_appeal`.
///
/// KEYS: decision, appeal, open index, all index, appeal's caller.
/// ARGV: user id, appeal json, appeal id, appeal key prefix, caller.
///
/// Another caller's decision is `not_found`, as one that does not exist.
pub(super) const CREATE_APPEAL: &str = r"
local d = redis.call('HMGET', KEYS[1], 'user', 'appealable', 'appeal', 'caller')
if not d[1] or d[1] ~= ARGV[1] or d[4] ~= ARGV[5] then return {'not_found'} end
if d[2] ~= '1' then return {'not_appealable'} end
if d[3] then
  local a = redis.call('GET', ARGV[4] .. d[3])
  if not a then return {'corrupt', d[3]} end
  return {'already', a}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'duplicate_id'} end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[5], ARGV[5])
redis.call('HSET', KEYS[1], 'appeal', ARGV[3])
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
return {'created'}
";

/// `resolve_appeal`, compare-and-set: the caller read `old` and computed `new`.
///
/// KEYS: appeal, open index, index of the new status. ARGV: old json, new json, appeal id.
pub(super) const RESOLVE_APPEAL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return 1
";

/// The cluster-wide global rate limit of one route class: GCRA on Redis's own clock (`TIME`,
/// so instances' clocks never disagree), in microseconds, the same rule as governor's: a
/// request conforms if its new theoretical arrival time is at most `burst` intervals ahead.
///
/// KEYS: the class's key. ARGV: emission interval (µs), burst.
/// Returns `{1, 0}` (admitted) or `{0, µs until one would conform}`.
pub(super) const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tau
if allow_at > now then return {0, allow_at - now} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
";
