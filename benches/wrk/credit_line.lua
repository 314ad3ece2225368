-- wrk script: GET /v1/credit-lines/{user} (auth, limits, admission, one store read, a quote).
local api_key = os.getenv("WRK_API_KEY") or "bench-caller-key-0001"
local user = os.getenv("WRK_USER") or "u-bench"
local headers = { ["Authorization"] = "Bearer " .. api_key }
function request()
  return wrk.format("GET", "/v1/credit-lines/" .. user, headers)
end
