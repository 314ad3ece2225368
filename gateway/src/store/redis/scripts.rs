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
/// approvals zset holds one member per approval (the user's version it made; a decision id
/// in a set written before) scored by its unix second: an approval counts while it is
/// younger than 24 hours, as in the memory store. The hash's `a0` is the zset's lowest
/// score ([`COMMIT`] keeps it so): while it still counts, every member does, and the count
/// is the zset's size.
macro_rules! view_fn {
    () => {
        r"
local function view(ukey, akey, now)
  local u = redis.call('HGETALL', ukey)
  if #u == 0 then return u end
  local up, up_until, a0 = 0, nil, nil
  for i = 1, #u, 2 do
    local f = u[i]
    if f == 'drawdowns_24h' then up = tonumber(u[i + 1])
    elseif f == 'up_until' then up_until = tonumber(u[i + 1])
    elseif f == 'a0' then a0 = tonumber(u[i + 1]) end
  end
  local since = math.floor(now / 1000) - 86400
  local n, first = 0, nil
  if a0 and a0 > since then
    n, first = redis.call('ZCARD', akey), a0
  else
    n = redis.call('ZCOUNT', akey, '(' .. since, '+inf')
    if n > 0 then
      first = tonumber(redis.call('ZRANGEBYSCORE', akey, '(' .. since, '+inf', 'WITHSCORES',
        'LIMIT', 0, 1)[2])
    end
  end
  local stable = -1
  if first then stable = (first + 86400) * 1000 end
  if up > 0 and (not up_until or now < up_until) then
    n = n + up
    if up_until and (stable < 0 or up_until < stable) then stable = up_until end
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

/// The Lua functions `record(key)` and `decision(key)`, which read an idempotency record and
/// a decision in either form: the string a commit writes, or the hash one wrote before.
///
/// A record is the string `<expiry ms> <fingerprint> <decision id>`; `record` answers
/// fingerprint, decision id and expiry (`nil` when there is none). A decision is the string
/// `<json>\n<available>\n<appealable>\n<user>\n<appeal id>\n<caller>` (compact JSON holds no
/// newline, the caller comes last, whatever it holds); `decision` answers `{json, available,
/// appealable, user, appeal id or false, caller or false, hash = true for the old form}`,
/// `nil` when there is none.
macro_rules! records_fn {
    () => {
        r"
local function record(k)
  local r = redis.pcall('GET', k)
  if type(r) == 'table' then
    local h = redis.call('HMGET', k, 'fp', 'decision', 'exp')
    return h[1], h[2], h[3]
  end
  if not r then return nil end
  local a = string.find(r, ' ', 1, true)
  local b = string.find(r, ' ', a + 1, true)
  return string.sub(r, a + 1, b - 1), string.sub(r, b + 1), string.sub(r, 1, a - 1)
end
local function decision(k)
  local r = redis.pcall('GET', k)
  if type(r) == 'table' then
    local h = redis.call('HMGET', k, 'json', 'available', 'appealable', 'user', 'appeal',
      'caller')
    if not h[1] then return nil end
    h.hash = true
    return h
  end
  if not r then return nil end
  local d, i = {}, 1
  for n = 1, 5 do
    local j = string.find(r, '\n', i, true)
    d[n] = string.sub(r, i, j - 1)
    i = j + 1
  end
  d[6] = string.sub(r, i)
  if d[5] == '' then d[5] = false end
  return d
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
    records_fn!(),
    r"
local user = view(KEYS[1], KEYS[2], tonumber(ARGV[2]))
if #user == 0 or not KEYS[3] then return {user} end
local fp, id = record(KEYS[3])
if not fp then return {user} end
local d = decision(ARGV[1] .. id) or {false, false}
return {user, fp, id, d[1], d[2]}
"
);

/// `commit`: the whole drawdown commit in one atomic step.
///
/// KEYS: user, idem, idem expiry queue, decision, audit stream, approvals.
/// ARGV: 1 fingerprint, 2 decision id, 3 decision json, 4 amount, 5 ceiling ('' when
/// nothing is reserved), 6 now (ms), 7 record expiry (ms), 8 record TTL (ms), 9 decision TTL
/// (ms), 10 user id, 11 the decision's fields after `available` (`<appealable>\n<user>\n\n
/// <caller>`: see `decision`), 12 caller, 13 the user's version the decision was evaluated
/// at ('' when unchecked), then the audit event's other values: 14 idempotency key,
/// 15 outcome, 16 threshold version, 17 policy, 18 evaluated at; then, when checked, what
/// the commit leaves: 19 used, 20 available, 21 the version after a reservation.
///
/// The user's version `v` counts its writes: a reservation bumps it (as an upsert does), so a
/// checked commit lands only on the state it was evaluated against, and answers the fresh
/// state (`line_changed`) otherwise; being that state, its `used` is not read, and the
/// amounts after the commit are the gateway's (the line is still checked against the
/// stored limit and the ceiling). A replay or a refused key is answered before the
/// version is looked at: the first commit of that key decided already. Everything is
/// checked before the first write; the decision is that write (`SET NX`: an id stored
/// already is refused there, and nothing is written).
///
/// An approval adds its new version to the user's approvals, scored by its second under
/// `now`, and keeps beside it in the user hash `a0` (see `view`) and `ax`, the `now` at
/// which the zset's expiry was last set to 26 hours. What is 24 hours old is dropped once
/// `a0` is (not on every approval); the expiry is set again once `now` is an hour from
/// `ax`, or when the zset is new, so the set outlives its last approval by
/// a day (wall time: Redis's own clock) and expires when none of it counts. Each record is
/// queued once on its slot's expiry queue (a list in commit order: `now` plus the one
/// retention), which [`PURGE`] reads from the head.
/// Returns `{'committed', available, version}`, `{'replayed', json, available}`,
/// `{'key_reused'}`, `{'user_not_found'}`, `{'line_changed', view}`,
/// `{'duplicate_id'}` or `{'corrupt', decision id}`.
pub(super) const COMMIT: &str = concat!(
    view_fn!(),
    records_fn!(),
    r"
local now = tonumber(ARGV[6])
local checked = ARGV[13] ~= ''
local st
if checked then
  st = redis.call('HMGET', KEYS[1], 'limit', 'v', 'up_until', 'a0', 'ax')
else
  st = redis.call('HMGET', KEYS[1], 'limit', 'v', 'up_until', 'a0', 'ax', 'used')
end
if not st[1] then return {'user_not_found'} end
local fp, id, exp = record(KEYS[2])
if fp and tonumber(exp) > now then
  if fp ~= ARGV[1] then return {'key_reused'} end
  local d = decision(string.sub(KEYS[4], 1, #KEYS[4] - #ARGV[2]) .. id)
  if not d then return {'corrupt', id} end
  return {'replayed', d[1], d[2]}
end
local v = st[2] or '0'
if checked and ARGV[13] ~= v then
  return {'line_changed', view(KEYS[1], KEYS[6], now)}
end
local limit = tonumber(st[1])
local reserve = ARGV[5] ~= ''
local used, used_s, available
if checked then
  used_s, available = ARGV[19], ARGV[20]
  used = tonumber(used_s)
  if reserve then v = ARGV[21] end
else
  used = tonumber(st[6])
  if reserve then used = used + tonumber(ARGV[4]) end
  used_s = string.format('%.0f', used)
  available = '0'
  if used < limit then available = string.format('%.0f', limit - used) end
  if reserve then v = string.format('%.0f', tonumber(v) + 1) end
end
if reserve and (used > tonumber(ARGV[5]) or used > limit) then
  return {'line_changed', view(KEYS[1], KEYS[6], now)}
end
if not redis.call('SET', KEYS[4], ARGV[3] .. '\n' .. available .. '\n' .. ARGV[11], 'NX',
  'PX', ARGV[9]) then
  return {'duplicate_id'}
end
if reserve then
  local set = {'used', used_s, 'v', v}
  if not st[3] then
    set[#set + 1] = 'up_until'
    set[#set + 1] = string.format('%.0f', now + 86400000)
  end
  local sec = math.floor(now / 1000)
  -- The second as text: the digits of `now` but its last three (no number formatting).
  local sec_s = now >= 1000 and string.sub(ARGV[6], 1, -4) or string.format('%.0f', sec)
  local a0, ax = tonumber(st[4]), tonumber(st[5])
  if not a0 or a0 <= sec - 86400 then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', sec - 86400)
    a0 = tonumber(redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')[2])
    if not a0 then ax = nil end
    if not a0 or sec < a0 then a0 = sec end
    set[#set + 1] = 'a0'
    set[#set + 1] = string.format('%.0f', a0)
  elseif sec < a0 then
    set[#set + 1] = 'a0'
    set[#set + 1] = sec_s
  end
  redis.call('ZADD', KEYS[6], sec_s, v)
  if not ax or math.abs(now - ax) >= 3600000 then
    redis.call('PEXPIRE', KEYS[6], 93600000)
    set[#set + 1] = 'ax'
    set[#set + 1] = ARGV[6]
  end
  redis.call('HSET', KEYS[1], unpack(set))
end
redis.call('SET', KEYS[2], ARGV[7] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[8])
redis.call('RPUSH', KEYS[3], ARGV[7] .. ' ' .. KEYS[2])
redis.call('XADD', KEYS[5], '*', 'decision_id', ARGV[2], 'user', ARGV[10], 'caller', ARGV[12],
  'idempotency_key', ARGV[14], 'outcome', ARGV[15], 'amount_fen', ARGV[4],
  'threshold_version', ARGV[16], 'policy', ARGV[17], 'evaluated_at', ARGV[18],
  'used_fen', used_s, 'available_fen', available)
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
/// KEYS: idem expiry queue, idem expiry index (the zset commits wrote before the queue).
/// ARGV: now (ms), most records to look at.
///
/// The queue holds `<expiry ms> <record key>` in commit order, so it is read from the head up
/// to the first entry not yet due (an entry behind one a skewed clock made later waits for
/// it; the record's Redis TTL bounds that too). A record written again since it was queued
/// (its key reused after its expiry) is kept until its own entry is due.
pub(super) const PURGE: &str = concat!(
    records_fn!(),
    r"
local now = tonumber(ARGV[1])
local n = 0
local function drop(k)
  local _, _, exp = record(k)
  if exp and tonumber(exp) <= now then n = n + redis.call('DEL', k) end
end
local queued = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local done = 0
for _, e in ipairs(queued) do
  local sp = string.find(e, ' ', 1, true)
  if tonumber(string.sub(e, 1, sp - 1)) > now then break end
  drop(string.sub(e, sp + 1))
  done = done + 1
end
if done > 0 then redis.call('LTRIM', KEYS[1], done, -1) end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, k in ipairs(due) do
  drop(k)
  redis.call('ZREM', KEYS[2], k)
end
return n
"
);

/// `create_appeal`.
///
/// KEYS: decision, appeal, open index, all index, appeal's caller.
/// ARGV: user id, appeal json, appeal id, appeal key prefix, caller.
///
/// Another caller's decision is `not_found`, as one that does not exist. The appealed
/// decision names its appeal and is kept (no expiry).
pub(super) const CREATE_APPEAL: &str = concat!(
    records_fn!(),
    r"
local d = decision(KEYS[1])
if not d or d[4] ~= ARGV[1] or d[6] ~= ARGV[5] then return {'not_found'} end
if d[3] ~= '1' then return {'not_appealable'} end
if d[5] then
  local a = redis.call('GET', ARGV[4] .. d[5])
  if not a then return {'corrupt', d[5]} end
  return {'already', a}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'duplicate_id'} end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[5], ARGV[5])
if d.hash then
  redis.call('HSET', KEYS[1], 'appeal', ARGV[3])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('SET', KEYS[1], table.concat({d[1], d[2], d[3], d[4], ARGV[3], d[6]}, '\n'))
end
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
return {'created'}
"
);

/// `get_decision`: a decision's JSON, available amount and caller (`false` each when there is
/// no such decision, or, for the caller, when it was stored before callers were recorded).
///
/// KEYS: decision.
pub(super) const GET_DECISION: &str = concat!(
    records_fn!(),
    r"
local d = decision(KEYS[1])
if not d then return {false, false, false} end
return {d[1], d[2], d[6]}
"
);

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
