-- wrk script: GET /healthz (the server layer, routing and the edge middleware; no auth, no
-- limits, no store).
function request()
  return wrk.format("GET", "/healthz")
end
