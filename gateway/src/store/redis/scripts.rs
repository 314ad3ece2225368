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
/// ARGV: 1 the decision's value (see `decision`; when unchecked, up to `available`:
/// `<json>\n`), 2 now (ms), 3 the idempotency record (`<expiry ms> <fingerprint> <decision
/// id>`: see `record`), 4 its expiry queue entry (`<expiry ms> <idem key>`), 5 record TTL
/// (ms), 6 decision TTL (ms), 7 the audit event (see below), 8 the user's version the
/// decision was evaluated at ('' when unchecked); then, when checked, 9 `used` after the
/// commit ('' when nothing is reserved), 10 the version after it; when unchecked, 9 the
/// decision's value after `available` (`\n<appealable>\n<user>\n\n<caller>`), 10 amount,
/// 11 ceiling ('' when nothing is reserved).
///
/// The user's version `v` counts its writes: a reservation bumps it (as an upsert does), so a
/// checked commit lands only on the state it was evaluated against, and answers the fresh
/// state (`line_changed`) otherwise. Being that state, it is not read again: what the
/// commit leaves (`used`, the decision's `available`, the new version) is the gateway's,
/// which checked the line on that state (its limit is the stored one: only an upsert
/// changes a limit, and it moves the version) and sends a commit whose line it cannot hold
/// unchecked. An unchecked commit reads `used` and checks the line against the stored
/// limit and the ceiling. A replay or a refused key is answered before the version is
/// looked at: the first commit of that key decided already.
///
/// The first write is the idempotency record (`SET NX`): in the common case, a key not
/// seen before, that write is also the look-up, one command for two. A key held already
/// is read (`record`) and answered (replay, reuse) or, past its retention, written over once
/// everything is checked. A commit refused after the `SET NX` (the line or the version
/// changed, a duplicate decision id) deletes that record again before it answers, in the
/// same atomic step: a refused commit leaves nothing behind. The decision is the second
/// write (`SET NX`: an id stored already is refused there).
///
/// The audit event is one field, `p`, packed by the gateway (see `mod.rs`, "The audit
/// streams"): complete when the commit is checked, else all but `used_fen` and
/// `available_fen`, which the script appends.
///
/// An approval adds its new version to the user's approvals, scored by its second under
/// `now`, and keeps beside it in the user hash `a0` (see `view`) and `ax`, the `now` at
/// which the zset's expiry was last set to 26 hours. What is 24 hours old is dropped once
/// `a0` is (not on every approval); the expiry is set again once `now` is an hour from
/// `ax`, or when the zset is new, so the set outlives its last approval by
/// a day (wall time: Redis's own clock) and expires when none of it counts. Each record is
/// queued once on its slot's expiry queue (a list in commit order: `now` plus the one
/// retention), which [`PURGE`] reads from the head.
/// Returns `{'committed'}` (checked: the gateway knows what it left), `{'committed',
/// available, version}` (unchecked), `{'replayed', json, available}`, `{'key_reused'}`,
/// `{'user_not_found'}`, `{'line_changed', view}`, `{'duplicate_id'}` or `{'corrupt',
/// decision id}`.
pub(super) const COMMIT: &str = concat!(
    view_fn!(),
    records_fn!(),
    r"
local now = tonumber(ARGV[2])
local checked = ARGV[8] ~= ''
local st
if checked then
  st = redis.call('HMGET', KEYS[1], 'limit', 'v', 'up_until', 'a0', 'ax')
else
  st = redis.call('HMGET', KEYS[1], 'limit', 'v', 'up_until', 'a0', 'ax', 'used')
end
if not st[1] then return {'user_not_found'} end
local fresh = redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[5])
if not fresh then
  local fp, id, exp = record(KEYS[2])
  if fp and tonumber(exp) > now then
    local rec = ARGV[3]
    local a = string.find(rec, ' ', 1, true)
    local b = string.find(rec, ' ', a + 1, true)
    if fp ~= string.sub(rec, a + 1, b - 1) then return {'key_reused'} end
    local mine = string.sub(rec, b + 1)
    local d = decision(string.sub(KEYS[4], 1, #KEYS[4] - #mine) .. id)
    if not d then return {'corrupt', id} end
    return {'replayed', d[1], d[2]}
  end
end
local function refuse(r)
  if fresh then redis.call('DEL', KEYS[2]) end
  return r
end
local v = st[2] or '0'
local reserve, used_s, available
local value = ARGV[1]
if checked then
  if ARGV[8] ~= v then return refuse({'line_changed', view(KEYS[1], KEYS[6], now)}) end
  used_s = ARGV[9]
  reserve = used_s ~= ''
  if reserve then v = ARGV[10] end
else
  local limit = tonumber(st[1])
  local used = tonumber(st[6])
  reserve = ARGV[11] ~= ''
  if reserve then used = used + tonumber(ARGV[10]) end
  used_s = string.format('%.0f', used)
  available = '0'
  if used < limit then available = string.format('%.0f', limit - used) end
  if reserve then
    if used > tonumber(ARGV[11]) or used > limit then
      return refuse({'line_changed', view(KEYS[1], KEYS[6], now)})
    end
    v = string.format('%.0f', tonumber(v) + 1)
  end
  value = value .. available .. ARGV[9]
end
if not redis.call('SET', KEYS[4], value, 'NX', 'PX', ARGV[6]) then
  return refuse({'duplicate_id'})
end
if not fresh then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5]) end
if reserve then
  local set = {'used', used_s, 'v', v}
  if not st[3] then
    set[#set + 1] = 'up_until'
    set[#set + 1] = string.format('%.0f', now + 86400000)
  end
  local sec = math.floor(now / 1000)
  -- The second as text: the digits of `now` but its last three (no number formatting).
  local sec_s = now >= 1000 and string.sub(ARGV[2], 1, -4) or string.format('%.0f', sec)
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
    set[#set + 1] = ARGV[2]
  end
  redis.call('HSET', KEYS[1], unpack(set))
end
redis.call('RPUSH', KEYS[3], ARGV[4])
if checked then
  redis.call('XADD', KEYS[5], '*', 'p', ARGV[7])
  return {'committed'}
end
redis.call('XADD', KEYS[5], '*', 'p',
  ARGV[7] .. #used_s .. ':' .. used_s .. ',' .. #available .. ':' .. available .. ',')
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
