-- wrk script: drawdown.lua's request marked as a retry (`X-Retry-Attempt: 1`). Against
-- shed.toml (a retry budget of zero) every request is shed by admission control before its
-- body is read: the cost of a shed response. Used by shed.sh.

local api_key = os.getenv("WRK_API_KEY") or "bench-caller-key-0001"
local user = os.getenv("WRK_USER") or "u-bench"
local body = '{"user_id":"' .. user .. '","amount_fen":100,"channel":"app"}'

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
  ["X-Retry-Attempt"] = "1",
}

function init(args)
  prefix = "wrk" .. os.time() .. "-" .. tostring(tid) .. "-"
end

function request()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", "/v1/drawdowns", headers, body)
end
