-- wrk script: POST /v1/drawdowns with the same Idempotency-Key every time: after the first
-- request, every one is a replay (one store read, no commit). Used by paths.sh.
local api_key = os.getenv("WRK_API_KEY") or "bench-caller-key-0001"
local user = os.getenv("WRK_USER") or "u-bench"
local body = '{"user_id":"' .. user .. '","amount_fen":100,"channel":"app"}'
local headers = {
  ["Authorization"] = "Bearer " .. api_key,
  ["Content-Type"] = "application/json",
  ["Idempotency-Key"] = "wrk-replay",
}
function request()
  return wrk.format("POST", "/v1/drawdowns", headers, body)
end
