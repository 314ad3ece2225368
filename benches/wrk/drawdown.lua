-- wrk script: POST /v1/drawdowns with a fresh Idempotency-Key on every request, so every
-- request is a new decision that commits (not a replay). Used by run.sh.
--
--   wrk -t1 -c64 -d10s -s benches/wrk/drawdown.lua http://127.0.0.1:18081
--
-- The key and user come from the environment when set (WRK_API_KEY, WRK_USER); keys are
-- "<run>-<thread>-<n>", where <run> is the start time, so a second run against the same
-- server does not replay the first one's keys. WRK_RETRY_ATTEMPT, when set, is sent as
-- `X-Retry-Attempt` (shed.sh marks every request a retry against a zero retry budget).

local api_key = os.getenv("WRK_API_KEY") or "bench-caller-key-0001"
local user = os.getenv("WRK_USER") or "u-bench"
-- WRK_USERS=N (N > 1) spreads the drawdowns over the users "<user>-0" .. "<user>-<N-1>" in
-- turn (common.sh's seed_user seeds them); the bodies are built once, here.
local users = tonumber(os.getenv("WRK_USERS") or "1")
local bodies = {}
for i = 0, users - 1 do
  local u = user
  if users > 1 then u = user .. "-" .. i end
  bodies[i + 1] = '{"user_id":"' .. u .. '","amount_fen":100,"channel":"app"}'
end

local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local prefix
local counter = 0
local headers = {
  ["Authorization"] = "Bearer " .. api_key,
  ["Content-Type"] = "application/json",
}
local retry_attempt = os.getenv("WRK_RETRY_ATTEMPT")
if retry_attempt then
  headers["X-Retry-Attempt"] = retry_attempt
end

function init(args)
  prefix = "wrk" .. os.time() .. "-" .. tostring(tid) .. "-"
end

function request()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", "/v1/drawdowns", headers, bodies[counter % users + 1])
end
